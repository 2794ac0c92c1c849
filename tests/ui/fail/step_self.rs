use flow_runtime as flow;

struct Client;

impl Client {
    #[flow::step(idempotent)]
    async fn push(&self, id: u64) -> Result<(), flow::Failure> {
        let _ = id;
        Ok(())
    }
}

fn main() {}

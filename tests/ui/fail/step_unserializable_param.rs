use flow_runtime as flow;

#[derive(Clone)]
struct Connection;

#[flow::step(idempotent)]
async fn push(conn: Connection, id: u64) -> Result<(), flow::Failure> {
    let _ = (conn, id);
    Ok(())
}

fn main() {}

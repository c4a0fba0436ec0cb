//! Compiles `proto/*.proto` with `protox` (pure Rust, no system `protoc`) and
//! generates the Rust types with `prost-build` into `OUT_DIR`; nothing
//! generated is committed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["hutong.proto"], ["proto"])?;
    prost_build::Config::new()
        // Chunk data is sliced out of the received frame, not copied.
        .bytes([".hutong.v1.PutChunk.data", ".hutong.v1.ChunkData.data"])
        .compile_fds(descriptors)?;
    Ok(())
}

//! Generates Rust for the protobuf that no crate ships (Jaeger's api_v2,
//! under `schemas/proto/`), with protox, a protobuf compiler in Rust, so the
//! build needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../schemas/proto";
    let files = [
        "jaeger/api_v2/model.proto",
        "jaeger/api_v2/collector.proto",
        "jaeger/api_v2/sampling.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={root}/{f}");
    }
    let descriptors = protox::compile(files, [root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}

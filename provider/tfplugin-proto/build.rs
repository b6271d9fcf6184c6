//! Generates the tfplugin6 and go-plugin service code. `protoc` comes from the
//! `protoc-bin-vendored` crate so a fresh machine needs no system package for it.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let include = protoc_bin_vendored::include_path()?;
    let include = include.to_str().ok_or("protoc include path is not UTF-8")?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/tfplugin6.proto", "proto/plugin.proto"], &["proto", include])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

//! Sets `cfg(linux_fast_path)`: the Linux-only device path (packet sockets
//! with virtio-net headers, a mapped receive ring, `sendmmsg`, eventfd,
//! epoll). It follows the target, except that `MIPFAST_PORTABLE_BUILD=1`
//! leaves it off on Linux too, so that the code macOS and the BSDs compile
//! (libpcap alone, a socketpair wake-up, `poll`) is built, linted and tested
//! on every CI run here (`scripts/test.sh`).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(linux_fast_path)");
    println!("cargo:rerun-if-env-changed=MIPFAST_PORTABLE_BUILD");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let portable = std::env::var("MIPFAST_PORTABLE_BUILD").is_ok_and(|v| v == "1");
    if linux && !portable {
        println!("cargo:rustc-cfg=linux_fast_path");
    }
}

//! Prints what the probe reads from files: `cargo run -p chorus-probe --example probe_file -- FILE…`.
fn main() {
    for path in std::env::args().skip(1) {
        let mut file = std::fs::File::open(&path).expect("open");
        let size = file.metadata().expect("metadata").len();
        println!("{path}: {:?}", chorus_probe::probe(&mut file, size));
    }
}

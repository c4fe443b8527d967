fn main() {
    eprintln!("ssed-soak: not written yet");
}

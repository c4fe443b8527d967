fn main() {
    eprintln!("ssed-load: not written yet");
}

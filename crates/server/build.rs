// The web app's build (web/dist) is embedded with include_dir!, and the migrations with sqlx's
// migrate!, neither of which cargo tracks: rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
    println!("cargo:rerun-if-changed=migrations");
}

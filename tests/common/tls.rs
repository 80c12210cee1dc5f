//! Test certificates, made by `openssl` for each test: a CA of its own and
//! a server certificate for localhost and 127.0.0.1 signed by it.

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it: apt-get install openssl")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for localhost and 127.0.0.1
/// signed by it (`server.pem`, `server.key`), in `dir`.
pub fn make_certs(dir: &Path) {
    make_certs_named(dir, "ca", "server");
}

/// Like [`make_certs`], with the files named `{ca}.pem` (its key `{ca}.key`)
/// and `{server}.pem`, `{server}.key`.
pub fn make_certs_named(dir: &Path, ca: &str, server: &str) {
    let (ca_key, ca_pem) = (format!("{ca}.key"), format!("{ca}.pem"));
    let (key, csr, pem) = (
        format!("{server}.key"),
        format!("{server}.csr"),
        format!("{server}.pem"),
    );
    let subject = format!("/CN=sluice-test-{ca}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca_pem,
            "-days", "2", "-subj", &subject,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

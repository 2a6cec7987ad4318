//! A distribution registry of the test's own (Debian's `docker-registry`)
//! on a loopback port: TLS from a CA the test makes, htpasswd or bearer-token
//! auth (or plain HTTP), the access log on.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::*;

pub const USER: &str = "pusher";
pub const PASSWORD: &str = "correct-horse-battery";

/// A registry of our own, killed (it is our child) and its storage removed
/// when dropped.
pub struct Registry {
    pub child: Child,
    pub token_server: Option<Child>,
    pub host: String,
    pub port: u16,
    /// Laid out as /etc/docker/certs.d: `HOST/ca.crt`.
    pub certs_d: PathBuf,
    pub log: PathBuf,
    pub dir: TempDir,
    pub starts: u32,
}

/// How the registry authenticates.
pub enum Auth {
    /// htpasswd: basic auth.
    Htpasswd,
    /// Bearer tokens from a token server of the test's own, which signs them
    /// with a key the registry trusts; it writes the scopes asked for to
    /// `scopes.log` in the registry's directory.
    Token,
    /// No auth, and plain HTTP: a registry an admin lists as insecure.
    PlainHttp,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something listens on `port`, or panics with `log`.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}):\n{}", read(log));
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not listen on port {port}:\n{}", read(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process's stdout and stderr, both to `log`.
pub fn logged(cmd: &mut Command, log: &Path) -> Child {
    let out = fs::File::create(log).expect("creating a log");
    let err = out.try_clone().expect("cloning the log fd");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?} (scripts/deps.sh test installs it): {e}"))
}

/// The token server: checks basic credentials, grants every scope asked for
/// (but push to `readonly/…`), and signs an RS256 JWT with `openssl dgst`, its certificate in `x5c`.
pub const TOKEN_SERVER: &str = r#"
import base64, json, ssl, subprocess, sys, time, uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlparse, parse_qs

port, tls_cert, tls_key, sign_key, sign_cert_b64, issuer, user, password, log = sys.argv[1:10]

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

class Handler(BaseHTTPRequestHandler):
    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.headers.get("Authorization", "") != expected:
            self.answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            return
        scopes = query.get("scope", [])
        with open(log, "a") as f:
            f.write(" ".join(scopes) + "\n")
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            granted = [a for a in actions.split(",") if a != "push" or not name.startswith("readonly/")]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [sign_cert_b64]}
        claims = {"iss": issuer, "sub": user, "aud": query.get("service", [""])[0],
                  "exp": now + 600, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                  "access": access}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sign_key],
                                   input=signing_input.encode(), capture_output=True, check=True).stdout
        self.answer(200, {"token": signing_input + "." + b64url(signature), "expires_in": 600})

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(tls_cert, tls_key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(Auth::Htpasswd)
    }

    pub fn start_with(auth: Auth) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let ca_key = d.join("ca.key");
        let ca = d.join("ca.crt");
        tool(
            "openssl",
            args![
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
                "-days",
                "2",
                "-subj",
                "/CN=freezeframe test CA"
            ],
        );
        let key = d.join("server.key");
        let csr = d.join("server.csr");
        let cert = d.join("server.crt");
        let ext = d.join("ext.cnf");
        tool(
            "openssl",
            args![
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=127.0.0.1"
            ],
        );
        write(&ext, "subjectAltName=IP:127.0.0.1\n");
        tool(
            "openssl",
            args![
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext
            ],
        );
        let certs_d = d.join("certs.d");
        mkdirs(&certs_d.join(&host));
        fs::copy(&ca, certs_d.join(&host).join("ca.crt")).expect("copying the CA");
        let mut token_server = None;
        let tls_config = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        let (tls_config, auth_config) = match auth {
            Auth::PlainHttp => (String::new(), String::new()),
            auth => (
                tls_config,
                Self::auth_config(auth, d, &cert, &key, &mut token_server),
            ),
        };
        let config = d.join("config.yml");
        write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n\
                 http:\n  addr: {host}\n  secret: freezeframe-test-upload-state\n{tls_config}\
                 {auth}",
                data = d.join("data").display(),
                auth = if auth_config.is_empty() {
                    String::new()
                } else {
                    format!("auth:\n{auth_config}")
                },
            ),
        );
        let log = d.join("registry.log");
        let mut child = logged(
            Command::new("docker-registry").arg("serve").arg(&config),
            &log,
        );
        wait_for_port(port, &mut child, "docker-registry", &log);
        Registry {
            child,
            token_server,
            host,
            port,
            certs_d,
            log,
            dir,
            starts: 1,
        }
    }

    /// The `auth:` section of the config for basic or token auth (starting the
    /// token server).
    pub fn auth_config(
        auth: Auth,
        d: &Path,
        cert: &Path,
        key: &Path,
        token_server: &mut Option<Child>,
    ) -> String {
        match auth {
            Auth::Htpasswd => {
                let htpasswd = tool("htpasswd", args!["-Bbn", USER, PASSWORD]);
                write(&d.join("htpasswd"), htpasswd.stdout);
                format!(
                    "  htpasswd:\n    realm: freezeframe-test\n    path: {}\n",
                    d.join("htpasswd").display()
                )
            }
            Auth::Token => {
                let sign_key = d.join("signer.key");
                let sign_cert = d.join("signer.crt");
                tool(
                    "openssl",
                    args![
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-keyout",
                        &sign_key,
                        "-out",
                        &sign_cert,
                        "-days",
                        "2",
                        "-subj",
                        "/CN=freezeframe token signer"
                    ],
                );
                // The certificate's DER in base64: its PEM body on one line.
                let sign_cert_b64: String = read(&sign_cert)
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect();
                let script = d.join("token_server.py");
                write(&script, TOKEN_SERVER);
                let token_port = free_port();
                let token_log = d.join("token-server.log");
                let mut child = logged(
                    Command::new("python3").arg(&script).args(args![
                        token_port.to_string(),
                        cert,
                        key,
                        &sign_key,
                        sign_cert_b64,
                        "freezeframe-test-issuer",
                        USER,
                        PASSWORD,
                        d.join("scopes.log")
                    ]),
                    &token_log,
                );
                wait_for_port(token_port, &mut child, "the token server", &token_log);
                *token_server = Some(child);
                format!(
                    "  token:\n    realm: https://127.0.0.1:{token_port}/token\n    \
                     service: freezeframe-test\n    issuer: freezeframe-test-issuer\n    \
                     rootcertbundle: {}\n",
                    sign_cert.display()
                )
            }
            Auth::PlainHttp => String::new(),
        }
    }

    /// Kills the registry (SIGKILL: no graceful end of requests in flight).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the registry and, after `down`, starts it again on the same port and storage
    /// (the upload state secret is in the config, so sessions survive); its
    /// access log starts afresh.
    pub fn restart(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.starts += 1;
        self.log = self
            .dir
            .path()
            .join(format!("registry-{}.log", self.starts));
        let config = self.dir.path().join("config.yml");
        self.child = logged(
            Command::new("docker-registry").arg("serve").arg(&config),
            &self.log,
        );
        wait_for_port(self.port, &mut self.child, "docker-registry", &self.log);
    }

    /// The scopes the token server was asked for, one request a line.
    pub fn token_scopes(&self) -> String {
        fs::read_to_string(self.dir.path().join("scopes.log")).unwrap_or_default()
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host)
    }

    /// The access log's request lines (`METHOD PATH`) so far.
    pub fn requests(&self) -> Vec<String> {
        // The access log is written once a response is sent.
        std::thread::sleep(Duration::from_millis(300));
        self.requests_now()
    }

    pub fn requests_now(&self) -> Vec<String> {
        read(&self.log)
            .lines()
            .filter_map(|line| {
                let start = line.find("] \"")? + 3;
                let rest = &line[start..];
                let end = rest.find(" HTTP/")?;
                Some(rest[..end].to_owned())
            })
            .collect()
    }

    /// `freezeframe push ARCHIVE REF --cert-dir … ARGS`.
    pub fn push(&self, archive: &Path, repo_tag: &str, extra: &[&str]) -> Outcome {
        run(&mut self.push_cmd(archive, repo_tag, extra))
    }

    pub fn push_cmd(&self, archive: &Path, repo_tag: &str, extra: &[&str]) -> Command {
        let mut a = args![
            "push",
            archive,
            self.reference(repo_tag),
            "--cert-dir",
            &self.certs_d
        ];
        a.extend(extra.iter().map(Into::into));
        let mut cmd = freezeframe_cmd(a);
        // No credentials from the host's files.
        cmd.env("DOCKER_CONFIG", self.certs_d.join("no-docker-config"))
            .env("REGISTRY_AUTH_FILE", self.certs_d.join("no-auth-file"))
            .env_remove("FREEZEFRAME_REGISTRY_CREDS");
        cmd
    }

    pub fn creds() -> String {
        format!("{USER}:{PASSWORD}")
    }

    /// `skopeo inspect docker://…` as JSON.
    pub fn skopeo_inspect(&self, repo_tag: &str) -> Value {
        tool(
            "skopeo",
            args![
                "inspect",
                "--cert-dir",
                self.certs_d.join(&self.host),
                "--creds",
                Self::creds(),
                format!("docker://{}", self.reference(repo_tag))
            ],
        )
        .json()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.token_server.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

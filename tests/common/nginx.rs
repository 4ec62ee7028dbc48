//! One nginx with Debian's RTMP module for the tests that need a real RTMP origin (it was
//! written twice): a plain RTMP listener on loopback, optionally an `on_publish` hook and a TLS
//! terminator (nginx's `stream` module) in front of it. Killed on drop; its error log is printed
//! when the test is failing.

use super::require_tool;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// What the nginx config holds besides the plain RTMP listener.
#[derive(Clone, Default)]
pub struct NginxOpts {
    /// `on_publish` URL for application `live`.
    pub on_publish: Option<String>,
    /// TLS terminator: (listen port, cert path, key path) proxied to the RTMP port.
    pub tls: Option<(u16, PathBuf, PathBuf)>,
}

pub struct Nginx {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    opts: NginxOpts,
}

impl Nginx {
    pub fn start(dir: &Path, port: u16, opts: NginxOpts) -> Nginx {
        require_tool("nginx");
        assert!(
            Path::new(RTMP_MODULE).exists(),
            "{RTMP_MODULE} is missing: run scripts/install-deps.sh (libnginx-mod-rtmp)"
        );
        let mut n = Nginx {
            child: None,
            port,
            dir: dir.to_path_buf(),
            opts,
        };
        n.restart();
        n
    }

    /// (Re)starts nginx with the same config and port; waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        let d = self.dir.display();
        let port = self.port;
        let mut conf = format!("load_module {RTMP_MODULE};\n");
        if self.opts.tls.is_some() {
            assert!(
                Path::new(STREAM_MODULE).exists(),
                "{STREAM_MODULE} is missing: run scripts/install-deps.sh (libnginx-mod-stream)"
            );
            conf.push_str(&format!("load_module {STREAM_MODULE};\n"));
        }
        let notify = match &self.opts.on_publish {
            Some(u) => format!("on_publish {u};"),
            None => String::new(),
        };
        // wait_key/wait_video: a reader joining mid-GOP starts at a keyframe.
        conf.push_str(&format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n\
             error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; wait_key on; wait_video on; {notify} }} }} }}\n"
        ));
        if let Some((tls_port, cert, key)) = &self.opts.tls {
            conf.push_str(&format!(
                "stream {{ server {{ listen 127.0.0.1:{tls_port} ssl;\n\
                   ssl_certificate {}; ssl_certificate_key {};\n\
                   proxy_pass 127.0.0.1:{port}; }} }}\n",
                cert.display(),
                key.display()
            ));
        }
        let conf_path = self.dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&self.dir)
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nginx did not listen on {port}; error.log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- nginx error.log:\n{}", self.log());
        }
    }
}

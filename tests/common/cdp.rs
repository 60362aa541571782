//! Drives headless chromium over the Chrome DevTools Protocol, enough to click on a page
//! like a user: the browser's page target over a WebSocket (RFC 6455, written out here:
//! text frames, masked from the client), `Runtime.evaluate` and
//! `Input.dispatchMouseEvent`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A headless chromium showing one page, and a DevTools connection to that page.
pub struct Browser {
    child: Child,
    ws: TcpStream,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `path` from `host` over plain HTTP/1.1; the body (read to its `Content-Length`:
/// chromium's DevTools server keeps the connection open).
fn http_get(host: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf)?;
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if body.len() >= length || n == 0 {
                return Ok(body.to_string());
            }
        } else if n == 0 {
            return Ok(String::new());
        }
    }
}

impl Browser {
    /// Starts `chromium` on `url` (profile in `profile`) and connects to the page.
    pub fn open(url: &str, profile: &Path) -> Browser {
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--window-size=1400,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let host = loop {
            let line = lines
                .next()
                .expect("chromium exited before its DevTools address")
                .unwrap();
            if let Some(rest) = line.split("ws://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        // Keep draining chromium's stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let end = Instant::now() + Duration::from_secs(30);
        let ws_url = loop {
            let targets: Value = http_get(&host, "/json/list")
                .ok()
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null);
            let page = targets.as_array().into_iter().flatten().find(|t| {
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
            });
            if let Some(ws) = page.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
                break ws.to_string();
            }
            assert!(Instant::now() < end, "chromium shows no page {url}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let path = format!("/{}", ws_url.splitn(4, '/').nth(3).unwrap());
        let mut ws = TcpStream::connect(&host).unwrap();
        ws.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            ws,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            ws.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "no WebSocket: {head}");
        Browser {
            child,
            ws,
            next_id: 1,
        }
    }

    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&frame).unwrap();
    }

    /// The next whole text message (control frames skipped).
    fn receive(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.ws.read_exact(&mut h).unwrap();
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.ws.read_exact(&mut b).unwrap();
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.ws.read_exact(&mut b).unwrap();
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.ws.read_exact(&mut payload).unwrap();
            if opcode >= 0x8 {
                continue; // ping, pong, close
            }
            message.extend(payload);
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// Calls DevTools `method`; its result (events that arrive meanwhile are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"id": id, "method": method, "params": params}).to_string());
        loop {
            let v: Value = serde_json::from_str(&self.receive()).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is true.
    pub fn wait_for(&mut self, expression: &str, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < end, "timed out waiting for {expression}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the centre of the element `selector` names, as a mouse would.
    pub fn click(&mut self, selector: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({sel}); e.scrollIntoView(); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            sel = json!(selector)
        );
        let at = self.eval(&expr);
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }
}

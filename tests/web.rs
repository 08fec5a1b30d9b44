//! The status page in a real browser: headless Chromium opens it in the namespace lab,
//! the test reads the rendered DOM over the DevTools protocol (cards, charts, the
//! timeline), black-holes an ISP and watches the page follow without a reload, checks it
//! fits a phone, and saves screenshots (target/artifacts/).

mod lab;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab::Lab;
use serde_json::{Value, json};

/// `printf %s let-me-see | sha256sum`
const TOKEN: &str = "let-me-see";
const TOKEN_SHA256: &str = "4ac364c86d9de58c82b1d75391b198a647ce9a107146a99b29426dc5dfe1c672";

fn config() -> String {
    format!(
        "lan_interfaces: [lan0]
uplinks:
  - {{name: isp1, interface: wan1, gateway: 100.64.1.1, weight: 70, probe: {{targets: [198.51.100.1, 198.51.100.2]}}}}
  - {{name: isp2, interface: wan2, gateway: 100.64.2.1, weight: 30, probe: {{targets: [198.51.100.1, 198.51.100.2]}}}}
policies:
  - {{name: console, match: {{source: 10.0.0.50}}, uplink: isp1}}
  - {{name: discard, match: {{protocol: tcp, destination_ports: 9}}, uplink: isp2}}
web: {{listen: 127.0.0.1:8080, token_sha256: {TOKEN_SHA256}}}
"
    )
}

/// Chromium in the router's namespace, killed when dropped.
struct Browser {
    child: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools connection to one page, from a thread inside the router's namespace.
struct Page {
    ws: tungstenite::WebSocket<TcpStream>,
    id: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let msg = json!({"id": self.id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("send");
        loop {
            let m = self.ws.read().expect("read");
            if let tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == self.id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expr` in the page; its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is true; how long that took.
    fn until(&mut self, expr: &str, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.eval(expr) == Value::Bool(true) {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn screenshot(&mut self, name: &str) {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
    }
}

/// Starts Chromium on the page and connects to it over DevTools.
fn open(lab: &Lab, browser: &str) -> (Browser, Page) {
    let profile = lab.file("chrome.yaml", "").with_file_name("chrome-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let url = format!("http://127.0.0.1:8080/?token={TOKEN}");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("rt"), browser])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=9222",
            "--window-size=1200,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // "DevTools listening on ws://..." says it is ready.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("DevTools listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("chromium did not start");
    let browser = Browser { child };
    let path = format!("/var/run/netns/{}", lab.ns("rt"));
    let ws_url = page_socket(lab);
    let page = std::thread::spawn(move || {
        lab::enter_netns(&path);
        let (host, rest) = ws_url.trim_start_matches("ws://").split_once('/').unwrap();
        let stream = TcpStream::connect(host).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{host}/{rest}"), stream).expect("ws");
        Page { ws, id: 0 }
    })
    .join()
    .unwrap();
    (browser, page)
}

/// The DevTools socket of the page (GET /json/list on the debugging port).
fn page_socket(lab: &Lab) -> String {
    let t = Instant::now();
    loop {
        let out = lab.exec("rt", &["curl", "-s", "http://127.0.0.1:9222/json/list"]);
        if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout)
            && let Some(page) = list
                .as_array()
                .and_then(|l| l.iter().find(|p| p["type"] == "page"))
        {
            return page["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no page target");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn curl(lab: &Lab, path: &str, token: bool) -> (u16, String) {
    let url = format!("http://127.0.0.1:8080{path}");
    let mut args = vec!["curl", "-s", "-w", "\n%{http_code}", url.as_str()];
    let header = format!("Authorization: Bearer {TOKEN}");
    if token {
        args.extend(["-H", header.as_str()]);
    }
    let out = lab.exec_ok("rt", &args);
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn the_status_page_shows_every_uplink_and_follows_an_outage_live() {
    if !lab::available() {
        return;
    }
    let Some(browser) = lab::chromium() else {
        assert!(
            std::env::var_os("MULTIWAN_REQUIRE_NETNS").is_none(),
            "chromium is missing (apt-get install chromium)"
        );
        eprintln!("chromium not installed: skipped");
        return;
    };
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("multiwan.yaml", &config());
    let daemon = lab.daemon(&path);
    daemon.expect("status page endpoint listening", Duration::from_secs(3));
    // The API asks for the token; the page itself holds nothing.
    assert_eq!(curl(&lab, "/api/status", false).0, 401);
    assert_eq!(curl(&lab, "/", false).0, 200);
    let (code, body) = curl(&lab, "/api/status", true);
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    let cli: Value = serde_json::from_str(&lab.multiwan_ok(&[
        "status",
        "--json",
        "-c",
        &path.to_string_lossy(),
    ]))
    .unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&status),
        keys(&cli),
        "the same document as status --json"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (code, history) = curl(&lab, "/api/history?range=hour", true);
    assert_eq!(code, 200);
    let h: Value = serde_json::from_str(&history).unwrap();
    assert!(
        h["series"]["isp1"]["t"].as_array().unwrap().len() >= 2,
        "{h}"
    );
    assert!(history.len() < 50_000, "{}", history.len());

    // Three new connections that the `discard` policy matches (nothing listens on port 9:
    // counted all the same).
    lab.connect_many(lab::LAN_CLIENT, lab::ECHO, 9, 3);
    let (_browser, mut page) = open(&lab, browser);
    let cards = "document.querySelectorAll('.card[data-state=up]').length === 2 \
                 && !!document.querySelector('.card[data-uplink=isp1]') \
                 && !!document.querySelector('.card[data-uplink=isp2]')";
    page.until(cards, Duration::from_secs(15))
        .expect("a card per uplink, both up");
    for (shown, what) in [
        (
            "[...document.querySelectorAll('#chart-rtt polyline')].some(p => +p.dataset.points >= 2)",
            "a chart with data points",
        ),
        (
            "[...document.querySelectorAll('#chart-bytes polyline')].some(p => p.dataset.series === 'isp1' && +p.dataset.points >= 2)",
            "the uplink's traffic is charted",
        ),
        (
            "document.querySelectorAll('#timeline li').length >= 1",
            "the timeline",
        ),
        (
            "[...document.querySelectorAll('#policies tr')].some(r => r.cells[0].textContent === 'discard' && +r.cells[2].textContent >= 3)",
            "the policy's new connections are counted",
        ),
    ] {
        page.until(shown, Duration::from_secs(15)).expect(what);
    }
    let summary = page.eval("document.getElementById('summary').textContent");
    assert_eq!(summary, "isp1 up, isp2 up");
    // An outage: the card turns down and the timeline says why, without a reload.
    lab.blackhole(1, true);
    daemon.expect("uplink=isp1 from=up to=down", Duration::from_secs(5));
    let followed = page.until(
        "document.querySelector('.card[data-uplink=isp1]').dataset.state === 'down' \
         && [...document.querySelectorAll('#timeline li')].some(li => li.textContent.includes('isp1: up → down'))",
        Duration::from_secs(5),
    );
    let took = followed.expect("the page follows the outage");
    assert!(took <= Duration::from_secs(2), "the page took {took:?}");
    page.until(
        "document.querySelectorAll('#chart-rtt rect.down-band').length >= 1",
        Duration::from_secs(8),
    )
    .expect("the outage is marked on the chart");
    page.screenshot("status-page-outage.png");
    // On a phone's screen: nothing wider than the screen.
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let width = page.eval("document.documentElement.scrollWidth");
    assert!(
        width.as_u64().unwrap() <= 390,
        "wider than a phone: {width}"
    );
    page.screenshot("status-page-phone.png");
    assert!(
        !daemon.log_text().contains("status page failed"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_page_off_loopback_needs_a_token_and_check_warns_of_plain_http() {
    let dir = std::env::temp_dir().join(format!("mw-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("web.yaml");
    std::fs::write(
        &path,
        format!(
            "lan_interfaces: [lan0]\nuplinks:\n  - {{name: isp1, interface: wan1}}\nweb: {{listen: 10.0.0.1:8080, token_sha256: {TOKEN_SHA256}}}\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("warning: web: the page on 10.0.0.1:8080 is plain HTTP"),
        "{said}"
    );
}

//! `ipt serve` driven in a real headless Chromium: choose a file in the page, restore it with the
//! default model, wait for the before/after view, and check that the result the page shows and
//! downloads is byte-identical to what `ipt restore` writes for the same file and options.
//!
//! Chromium comes from `IPT_CHROMIUM` (a browser executable; `cargo xtask test` installs Debian's
//! `chromium` package when missing and sets it), else `chromium` in `/usr/bin` or `/usr/local/bin`.
//! Without a browser the test fails and says how to get one.
//!
//! `IPT_SERVE_IMAGE=FILE` restores that file instead of the test's own picture, and
//! `IPT_SERVE_SCREENSHOT=FILE` saves a screenshot of the page with its result (how
//! `docs/serve.png` is made; see `docs/serve.md`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions};
use ipt_degrade::Image;
use ndarray::Array3;

/// The browser to drive, or a message saying how to get one.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("IPT_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    ["/usr/bin/chromium", "/usr/local/bin/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "this test drives `ipt serve` in Chromium, which is not installed: run `cargo xtask \
                 test` (it installs Debian's chromium package as root), or `apt-get install chromium`, \
                 or set IPT_CHROMIUM to a Chrome/Chromium executable"
            )
        })
}

/// `ipt serve` on a free port, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start() -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipt"))
            .args(["serve", "--port", "0", "--device", "cpu"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting ipt serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Served { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn picture(h: usize, w: usize) -> Image {
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let ring = ((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt() * 40.0;
        (127.0 + 100.0 * (ring + c as f32).sin()).round()
    })
}

#[test]
fn the_page_restores_an_upload_as_ipt_restore_does() {
    let browser_path = chromium();
    let dir = tempfile::tempdir().unwrap();
    let input = match std::env::var_os("IPT_SERVE_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = dir.path().join("rings.png");
            ipt_degrade::io::write_png(&p, &picture(60, 80)).unwrap();
            p
        }
    };
    let served = Served::start();

    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(browser_path))
            .sandbox(false) // CI runs as root, where Chromium's sandbox cannot start
            .window_size(Some((1200, 900)))
            .build()
            .unwrap(),
    )
    .expect("launching Chromium");
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&served.url).unwrap();
    tab.wait_until_navigated().unwrap();
    tab.wait_for_element("#model option").unwrap();
    let eval = |js: &str| tab.evaluate(js, true).unwrap().value;
    // the default model is the best ×2 one, with its task preselected
    assert_eq!(
        eval(r#"document.getElementById("model").value"#),
        Some(serde_json::json!("ipt-small-scratch-sr2"))
    );
    let file_input = tab.wait_for_element("#file").unwrap();
    file_input
        .set_input_files(&[input.to_str().unwrap()])
        .unwrap();
    eval(r#"document.getElementById("file").dispatchEvent(new Event("change"))"#);
    tab.wait_for_element("#go:not([disabled])")
        .unwrap()
        .click()
        .unwrap();
    let started = Instant::now();
    loop {
        let done = eval(r#"document.body.dataset.done === "1""#);
        if done == Some(serde_json::json!(true)) {
            break;
        }
        let error = eval(r#"document.getElementById("error").textContent"#);
        assert_eq!(
            error,
            Some(serde_json::json!("")),
            "the page shows an error"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no result after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // the result as the page holds it (the image it shows and the download link's target)
    let bytes = eval(
        r#"fetch(document.getElementById("download").href)
             .then(r => r.arrayBuffer())
             .then(b => JSON.stringify(Array.from(new Uint8Array(b))))"#,
    );
    let bytes: Vec<u8> = serde_json::from_str(bytes.unwrap().as_str().unwrap()).unwrap();
    let (w, h) = image::image_dimensions(&input).unwrap();
    let shown = eval(
        r#"(() => { const a = document.getElementById("after");
                    return a.naturalWidth + "x" + a.naturalHeight; })()"#,
    );
    assert_eq!(
        shown,
        Some(serde_json::json!(format!("{}x{}", 2 * w, 2 * h)))
    );

    if let Some(shot) = std::env::var_os("IPT_SERVE_SCREENSHOT") {
        eval(r#"const z = document.getElementById("zoom"); z.value = 30; z.oninput();"#);
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap();
        std::fs::write(&shot, png).unwrap();
    }

    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_ipt"))
        .args([
            "restore",
            "-n",
            "ipt-small-scratch-sr2",
            "--device",
            "cpu",
            "-o",
        ])
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stem = Path::new(&input).file_stem().unwrap().to_str().unwrap();
    let want = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
    assert!(
        bytes == want,
        "the page's result differs from ipt restore's output"
    );
}

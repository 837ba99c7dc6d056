//! `ipt serve`: a local web page to restore images with the shipped models.
//!
//! The page (`serve/page.html`, compiled in) uploads an image, polls its job and shows the result
//! beside the input with a before/after slider and a synchronized zoom. Behind it, one worker
//! thread restores one job at a time through the library's restore path
//! ([`RestoreJob::restore_photo`] and [`encode_photo`], what `ipt restore` writes for the same
//! options: the same bytes); jobs wait in a queue and can be cancelled.
//!
//! Safety rules: it binds 127.0.0.1 unless `--host` says otherwise; only shipped models can be
//! chosen (by name; no paths from the client); uploads are bounded in bytes (`--max-upload-mb`)
//! and pixels (`--max-pixels`, checked from the header before decoding) and decoded with the
//! workspace's limits; requests that change state (`POST`, `DELETE`) from another origin
//! (an `Origin` header other than this server's, or `Sec-Fetch-Site: cross-site`) are refused.
//!
//! API: `GET /` the page; `GET /api/models`; `POST /api/jobs?model=NAME&task=TASK&name=FILE`
//! with the image as the body → `{"id": N}`; `GET /api/jobs/N` → state and progress;
//! `GET /api/jobs/N/result` → the PNG; `DELETE /api/jobs/N` cancels.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ipt_degrade::io::ImageLimits;
use ipt_degrade::photo::{decode_photo_bytes, encode_photo, OutputFormat};
use ipt_eval::models::{ModelRef, ShippedModel, SHIPPED};
use ipt_eval::restore_job::{BitDepth, Event, JobSpec, RestoreJob};
use ipt_model::checkpoint::InferOptions;
use ipt_model::chop::ChopMode;
use ipt_model::device::DeviceSpec;
use ipt_model::restore::RestoreOptions;
use ipt_model::TaskSelector;
use serde::{Deserialize, Serialize};
use tch::Device;

/// The page, compiled in.
const PAGE: &str = include_str!("serve/page.html");

/// Arguments of `ipt serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes the page to the
    /// network).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
    /// Largest upload, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_upload_mb: u64,
    /// Largest image, in pixels (checked from the file's header before decoding).
    #[arg(long, default_value_t = 4096 * 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
    /// Window layout (as `ipt restore --chop`).
    #[arg(long, default_value_t = ChopMode::Fast, value_name = "MODE")]
    pub chop: ChopMode,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// One upload and what became of it.
#[derive(Debug)]
struct Job {
    state: JobState,
    model: &'static ShippedModel,
    task: Option<String>,
    name: String,
    input: Option<Bytes>,
    windows_done: usize,
    windows: usize,
    result: Option<Vec<u8>>,
    error: Option<String>,
    cancel: bool,
}

/// The queue and every job, behind one lock; the worker waits on `wake`.
#[derive(Default)]
struct Jobs {
    all: HashMap<u64, Job>,
    queue: VecDeque<u64>,
    next: u64,
}

/// What the handlers and the worker share.
pub struct Server {
    jobs: Mutex<Jobs>,
    wake: Condvar,
    device: Device,
    options: RestoreOptions,
    max_pixels: u64,
    max_upload: usize,
    /// `http://HOST:PORT` values an `Origin` header may have (set once the port is known).
    origins: Mutex<Vec<String>>,
}

impl Server {
    /// A server restoring on `device` with `args`' limits and layout.
    pub fn new(args: &Args, device: Device) -> Arc<Server> {
        Arc::new(Server {
            jobs: Mutex::default(),
            wake: Condvar::new(),
            device,
            options: RestoreOptions {
                chop: args.chop,
                ..Default::default()
            },
            max_pixels: args.max_pixels,
            max_upload: (args.max_upload_mb << 20) as usize,
            origins: Mutex::default(),
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // a panic while holding the lock leaves consistent data (every update is one assignment)
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts `addr` (and `localhost` for a loopback address) as this server's origin.
    fn set_origins(&self, addr: SocketAddr) {
        let mut o = vec![format!("http://{addr}")];
        if addr.ip().is_loopback() {
            o.push(format!("http://localhost:{}", addr.port()));
            o.push(format!("http://127.0.0.1:{}", addr.port()));
        }
        *self.origins.lock().unwrap_or_else(|e| e.into_inner()) = o;
    }

    /// The worker: takes queued jobs one at a time, forever.
    fn work(self: &Arc<Self>) {
        let mut opened: HashMap<(String, Option<String>), RestoreJob> = HashMap::new();
        loop {
            let (id, model, task, name, input) = {
                let mut jobs = self.jobs();
                let id = loop {
                    if let Some(id) = jobs.queue.pop_front() {
                        break id;
                    }
                    jobs = self.wake.wait(jobs).unwrap_or_else(|e| e.into_inner());
                };
                let Some(job) = jobs.all.get_mut(&id) else {
                    continue;
                };
                job.state = JobState::Running;
                (
                    id,
                    job.model,
                    job.task.clone(),
                    job.name.clone(),
                    job.input.take(),
                )
            };
            // a panic (libtorch out of memory, or a bug) fails this job, not the worker
            let outcome = crate::panics::run(|| {
                input
                    .ok_or_else(|| "no input".to_string())
                    .and_then(|bytes| {
                        let key = (model.name.to_string(), task.clone());
                        if !opened.contains_key(&key) {
                            opened.insert(key.clone(), self.open(model, task.as_deref())?);
                        }
                        let job = &opened[&key];
                        self.restore(id, job, &bytes, &name)
                    })
            })
            .unwrap_or_else(|crash| Err(crash.to_string()));
            let mut jobs = self.jobs();
            if let Some(job) = jobs.all.get_mut(&id) {
                match outcome {
                    _ if job.cancel => job.state = JobState::Cancelled,
                    Ok(png) => {
                        job.result = Some(png);
                        job.state = JobState::Done;
                    }
                    Err(e) => {
                        job.error = Some(e);
                        job.state = JobState::Failed;
                    }
                }
            }
        }
    }

    /// Opens a shipped model for one task, as `ipt restore -n NAME --task TASK` does.
    fn open(&self, model: &'static ShippedModel, task: Option<&str>) -> Result<RestoreJob, String> {
        let task = task
            .map(|t| t.parse::<TaskSelector>())
            .transpose()
            .map_err(|e| e.to_string())?;
        let spec = JobSpec {
            model: ModelRef::Shipped(model),
            task,
            infer: InferOptions::default(),
            options: self.options,
            bit_depth: BitDepth::Auto,
            format: OutputFormat::Png,
            outscale: None,
            skip_existing: false,
            memory_limit: None,
            max_pixels: Some(self.max_pixels),
        };
        RestoreJob::open(spec, self.device).map_err(|e| error_text(&e))
    }

    /// Restores one upload into PNG bytes, counting windows into the job's progress.
    fn restore(
        &self,
        id: u64,
        job: &RestoreJob,
        bytes: &[u8],
        name: &str,
    ) -> Result<Vec<u8>, String> {
        let name = Path::new(name);
        let limits = ImageLimits {
            max_pixels: self.max_pixels,
            ..ImageLimits::default()
        };
        let photo = decode_photo_bytes(bytes, name, &limits).map_err(|e| e.to_string())?;
        let (_, h, w) = photo.pixels.dim();
        if let Some(j) = self.jobs().all.get_mut(&id) {
            j.windows = job.windows((h, w));
        }
        let (restored, _) = job
            .restore_photo(&photo, &mut |e| {
                if let Event::Windows(n) = e {
                    if let Some(j) = self.jobs().all.get_mut(&id) {
                        j.windows_done += n;
                    }
                }
            })
            .map_err(|e| error_text(&e))?;
        let encoded =
            encode_photo(name, &restored, OutputFormat::Png).map_err(|e| e.to_string())?;
        Ok(encoded.bytes)
    }
}

/// An error and its causes in one line.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text += &format!(": {cause}");
        }
        source = s.source();
    }
    text
}

/// An error response with a JSON body `{"error": "..."}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The routes, over `server`.
pub fn router(server: Arc<Server>) -> Router {
    let max_upload = server.max_upload;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/models", get(models))
        .route("/api/jobs", axum::routing::post(submit))
        .route("/api/jobs/{id}", get(status).delete(cancel))
        .route("/api/jobs/{id}/result", get(result))
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            same_origin,
        ))
        .layer(DefaultBodyLimit::max(max_upload))
        .with_state(server)
}

/// Refuses state-changing requests from other origins.
async fn same_origin(
    State(server): State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let headers = request.headers();
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        let foreign = headers.get(header::ORIGIN).is_some_and(|o| {
            let origins = server.origins.lock().unwrap_or_else(|e| e.into_inner());
            !origins
                .iter()
                .any(|allowed| o.as_bytes() == allowed.as_bytes())
        });
        if cross_site || foreign {
            return refuse(
                StatusCode::FORBIDDEN,
                "requests from other sites are refused",
            );
        }
    }
    next.run(request).await
}

#[derive(Serialize)]
struct ModelInfo {
    name: &'static str,
    about: &'static str,
    tasks: Vec<String>,
    best_for: &'static [&'static str],
}

async fn models() -> Response {
    let list: Vec<ModelInfo> = SHIPPED
        .iter()
        .map(|m| ModelInfo {
            name: m.name,
            about: m.about,
            tasks: model_tasks(m).to_vec(),
            best_for: m.best_for,
        })
        .collect();
    Json(list).into_response()
}

/// The task names of a shipped model's heads (from its recorded config), read from its weights
/// once per process: the model list and every upload ask for them.
fn model_tasks(m: &ShippedModel) -> &'static [String] {
    static TASKS: std::sync::OnceLock<HashMap<&'static str, Vec<String>>> =
        std::sync::OnceLock::new();
    let all = TASKS.get_or_init(|| {
        SHIPPED
            .iter()
            .map(|m| {
                let tasks = ipt_model::checkpoint::read_state_dict_bytes(m.bytes, &m.path())
                    .ok()
                    .and_then(|sd| {
                        ipt_model::checkpoint::infer_config(&sd, &InferOptions::default()).ok()
                    })
                    .map(|config| {
                        config
                            .task_map()
                            .heads()
                            .filter_map(|h| h.task.map(|t| t.name().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                (m.name, tasks)
            })
            .collect()
    });
    all.get(m.name).map_or(&[], Vec::as_slice)
}

#[derive(Deserialize)]
struct SubmitQuery {
    model: String,
    task: Option<String>,
    name: Option<String>,
}

async fn submit(
    State(server): State<Arc<Server>>,
    Query(q): Query<SubmitQuery>,
    body: Bytes,
) -> Response {
    let Some(model) = SHIPPED.iter().find(|m| m.name == q.model) else {
        let names: Vec<&str> = SHIPPED.iter().map(|m| m.name).collect();
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown model {:?}; choose one of {}",
                q.model,
                names.join(", ")
            ),
        );
    };
    let task = q.task.filter(|t| !t.is_empty());
    if let Some(t) = &task {
        if let Err(e) = t.parse::<TaskSelector>() {
            return refuse(StatusCode::BAD_REQUEST, e.to_string());
        }
        if !model_tasks(model).iter().any(|have| have == t) {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("model {} has no {t} head", model.name),
            );
        }
    }
    // a file name for messages only: never a path on this machine
    let name = q
        .name
        .as_deref()
        .and_then(|n| Path::new(n).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    if body.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "the request carries no image");
    }
    match ipt_degrade::io::header_size_bytes(&body, Path::new(&name)) {
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Ok((w, h)) if u64::from(w) * u64::from(h) > server.max_pixels => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{name} is {w}×{h} pixels, more than this server's limit of {} (ipt serve \
                     --max-pixels)",
                    server.max_pixels
                ),
            )
        }
        Ok(_) => {}
    }
    let id = {
        let mut jobs = server.jobs();
        forget_old_jobs(&mut jobs);
        jobs.next += 1;
        let id = jobs.next;
        jobs.all.insert(
            id,
            Job {
                state: JobState::Queued,
                model,
                task,
                name,
                input: Some(body),
                windows_done: 0,
                windows: 0,
                result: None,
                error: None,
                cancel: false,
            },
        );
        jobs.queue.push_back(id);
        id
    };
    server.wake.notify_one();
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response()
}

/// Finished jobs kept (with their results) for the page to fetch; older ones are forgotten.
const KEEP_FINISHED: usize = 16;

/// Forgets the oldest finished jobs beyond [`KEEP_FINISHED`], so results do not pile up in memory.
fn forget_old_jobs(jobs: &mut Jobs) {
    let mut finished: Vec<u64> = jobs
        .all
        .iter()
        .filter(|(_, j)| !matches!(j.state, JobState::Queued | JobState::Running))
        .map(|(&id, _)| id)
        .collect();
    finished.sort_unstable();
    let excess = finished.len().saturating_sub(KEEP_FINISHED);
    for id in &finished[..excess] {
        jobs.all.remove(id);
    }
}

#[derive(Serialize)]
struct StatusBody {
    id: u64,
    state: JobState,
    model: &'static str,
    task: Option<String>,
    name: String,
    windows_done: usize,
    windows: usize,
    queued_before: usize,
    error: Option<String>,
}

async fn status(State(server): State<Arc<Server>>, UrlPath(id): UrlPath<u64>) -> Response {
    let jobs = server.jobs();
    let Some(job) = jobs.all.get(&id) else {
        return refuse(StatusCode::NOT_FOUND, format!("no job {id}"));
    };
    let queued_before = jobs.queue.iter().take_while(|&&q| q != id).count();
    Json(StatusBody {
        id,
        state: job.state,
        model: job.model.name,
        task: job.task.clone(),
        name: job.name.clone(),
        windows_done: job.windows_done,
        windows: job.windows,
        queued_before: if job.state == JobState::Queued {
            queued_before
        } else {
            0
        },
        error: job.error.clone(),
    })
    .into_response()
}

async fn cancel(State(server): State<Arc<Server>>, UrlPath(id): UrlPath<u64>) -> Response {
    let mut jobs = server.jobs();
    let Some(job) = jobs.all.get_mut(&id) else {
        return refuse(StatusCode::NOT_FOUND, format!("no job {id}"));
    };
    job.cancel = true;
    match job.state {
        JobState::Queued => {
            job.state = JobState::Cancelled;
            job.input = None;
            jobs.queue.retain(|&q| q != id);
        }
        // the running image finishes (windows are not interruptible) and its result is dropped
        JobState::Running => {}
        JobState::Done | JobState::Failed | JobState::Cancelled => {
            job.result = None;
            job.state = JobState::Cancelled;
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn result(
    State(server): State<Arc<Server>>,
    UrlPath(id): UrlPath<u64>,
    _headers: HeaderMap,
) -> Response {
    let jobs = server.jobs();
    let Some(job) = jobs.all.get(&id) else {
        return refuse(StatusCode::NOT_FOUND, format!("no job {id}"));
    };
    let Some(png) = &job.result else {
        return refuse(
            StatusCode::CONFLICT,
            format!("job {id} has no result (it is {:?})", job.state).to_lowercase(),
        );
    };
    let stem = Path::new(&job.name)
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['"', '\\'], "_"))
        .unwrap_or_else(|| "restored".into());
    (
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{stem}.png\""),
            ),
        ],
        png.clone(),
    )
        .into_response()
}

/// Run `ipt serve`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let server = Server::new(&args, device);
    {
        let server = server.clone();
        std::thread::Builder::new()
            .name("restore-worker".into())
            .spawn(move || server.work())?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr()?;
        server.set_origins(local);
        println!("serving on http://{local}/ (Ctrl-C to stop)");
        if !args.host.is_loopback() {
            eprintln!(
                "note: listening on {}: anyone who can reach this machine can use the page",
                args.host
            );
        }
        axum::serve(listener, router(server))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn server() -> Arc<Server> {
        let args = Args {
            host: "127.0.0.1".parse().unwrap(),
            port: 0,
            device: DeviceSpec::Cpu,
            max_upload_mb: 1,
            max_pixels: 64 * 64,
            chop: ChopMode::Fast,
        };
        let s = Server::new(&args, Device::Cpu);
        s.set_origins("127.0.0.1:8080".parse().unwrap());
        let worker = s.clone();
        std::thread::spawn(move || worker.work());
        s
    }

    async fn send(s: &Arc<Server>, req: axum::http::Request<Body>) -> (StatusCode, Vec<u8>) {
        let resp = router(s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, body)
    }

    fn post(uri: &str, body: Vec<u8>) -> axum::http::Request<Body> {
        axum::http::Request::post(uri)
            .body(Body::from(body))
            .unwrap()
    }

    fn png(w: usize, h: usize) -> Vec<u8> {
        let img = ndarray::Array3::from_shape_fn((3, h, w), |(c, y, x)| {
            ((x * 9 + y * 5 + c * 70) % 256) as f32
        });
        ipt_degrade::io::encode_png(Path::new("t.png"), &img).unwrap()
    }

    fn json(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[tokio::test]
    async fn a_job_restores_the_same_bytes_as_ipt_restore() {
        let s = server();
        let input = png(20, 14);
        let (st, body) = send(
            &s,
            post(
                "/api/jobs?model=ipt-small-pretrain&task=denoise30&name=a.png",
                input.clone(),
            ),
        )
        .await;
        assert_eq!(
            st,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let id = json(&body)["id"].as_u64().unwrap();
        let state = loop {
            let req = axum::http::Request::get(format!("/api/jobs/{id}")).body(Body::empty());
            let (_, body) = send(&s, req.unwrap()).await;
            let v = json(&body);
            if v["state"] != "queued" && v["state"] != "running" {
                break v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(state["state"], "done", "{state}");
        assert_eq!(state["windows_done"], state["windows"]);
        let req = axum::http::Request::get(format!("/api/jobs/{id}/result")).body(Body::empty());
        let (st, got) = send(&s, req.unwrap()).await;
        assert_eq!(st, StatusCode::OK);
        // what `ipt restore -n ipt-small-pretrain --task denoise30` writes for this file
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("a.png"), dir.path().join("out"));
        std::fs::write(&src, &input).unwrap();
        use clap::Parser;
        let cli = crate::Cli::try_parse_from([
            "ipt",
            "restore",
            "-n",
            "ipt-small-pretrain",
            "--task",
            "denoise30",
            "--device",
            "cpu",
            "-o",
            out.to_str().unwrap(),
            src.to_str().unwrap(),
        ])
        .unwrap();
        crate::run(cli).unwrap();
        assert_eq!(got, std::fs::read(out.join("a.png")).unwrap());
    }

    #[test]
    fn only_the_newest_finished_jobs_are_kept() {
        let mut jobs = Jobs::default();
        for id in 1..=20u64 {
            let state = if id == 3 {
                JobState::Queued
            } else {
                JobState::Done
            };
            jobs.all.insert(
                id,
                Job {
                    state,
                    model: &SHIPPED[0],
                    task: None,
                    name: "x.png".into(),
                    input: None,
                    windows_done: 0,
                    windows: 0,
                    result: Some(vec![0; 10]),
                    error: None,
                    cancel: false,
                },
            );
        }
        forget_old_jobs(&mut jobs);
        let mut left: Vec<u64> = jobs.all.keys().copied().collect();
        left.sort_unstable();
        let mut want = vec![3];
        want.extend(5..=20);
        assert_eq!(
            left, want,
            "the queued job stays, the 16 newest finished ones stay"
        );
    }

    #[tokio::test]
    async fn every_error_path_answers_in_words() {
        let s = server();
        let cases: Vec<(axum::http::Request<Body>, StatusCode, &str)> = vec![
            (
                post("/api/jobs?model=/etc/passwd", png(8, 8)),
                StatusCode::BAD_REQUEST,
                "unknown model",
            ),
            (
                post("/api/jobs?model=ipt-small-scratch-sr2&task=sr4", png(8, 8)),
                StatusCode::BAD_REQUEST,
                "no sr4 head",
            ),
            (
                post("/api/jobs?model=ipt-small-pretrain&task=banana", png(8, 8)),
                StatusCode::BAD_REQUEST,
                "banana",
            ),
            (
                post("/api/jobs?model=ipt-small-pretrain", Vec::new()),
                StatusCode::BAD_REQUEST,
                "no image",
            ),
            (
                post(
                    "/api/jobs?model=ipt-small-pretrain",
                    b"not an image".to_vec(),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown or unsupported",
            ),
            (
                post("/api/jobs?model=ipt-small-pretrain", png(65, 64)),
                StatusCode::PAYLOAD_TOO_LARGE,
                "--max-pixels",
            ),
            (
                post("/api/jobs?model=ipt-small-pretrain", vec![0; 2 << 20]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "",
            ),
            (post("/api/jobs", png(8, 8)), StatusCode::BAD_REQUEST, ""),
            (
                axum::http::Request::get("/api/jobs/99")
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::NOT_FOUND,
                "no job 99",
            ),
            (
                axum::http::Request::get("/api/jobs/99/result")
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::NOT_FOUND,
                "no job 99",
            ),
            (
                axum::http::Request::delete("/api/jobs/99")
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::NOT_FOUND,
                "no job 99",
            ),
            (
                axum::http::Request::post("/api/jobs?model=ipt-small-pretrain")
                    .header("origin", "http://evil.example")
                    .body(Body::from(png(8, 8)))
                    .unwrap(),
                StatusCode::FORBIDDEN,
                "other sites",
            ),
            (
                axum::http::Request::delete("/api/jobs/1")
                    .header("sec-fetch-site", "cross-site")
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::FORBIDDEN,
                "other sites",
            ),
        ];
        for (req, want, text) in cases {
            let what = format!("{} {}", req.method(), req.uri());
            let (st, body) = send(&s, req).await;
            assert_eq!(st, want, "{what}: {}", String::from_utf8_lossy(&body));
            assert!(
                String::from_utf8_lossy(&body).contains(text),
                "{what}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        // the page's own origin is accepted; the page and the model list are served
        let req = axum::http::Request::post("/api/jobs?model=ipt-small-pretrain&task=denoise50")
            .header("origin", "http://localhost:8080")
            .body(Body::from(png(8, 8)))
            .unwrap();
        let (st, body) = send(&s, req).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        let id = json(&body)["id"].as_u64().unwrap();
        // a result asked for before it exists, then a cancel
        let req = axum::http::Request::delete(format!("/api/jobs/{id}")).body(Body::empty());
        assert_eq!(send(&s, req.unwrap()).await.0, StatusCode::NO_CONTENT);
        let req = axum::http::Request::get(format!("/api/jobs/{id}/result")).body(Body::empty());
        let (st, body) = send(&s, req.unwrap()).await;
        assert_eq!(
            st,
            StatusCode::CONFLICT,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (st, body) = send(
            &s,
            axum::http::Request::get("/").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("<title>ipt"));
        let req = axum::http::Request::get("/api/models")
            .body(Body::empty())
            .unwrap();
        let models = json(&send(&s, req).await.1);
        assert_eq!(models[1]["name"], "ipt-small-pretrain");
        assert_eq!(models[1]["tasks"].as_array().unwrap().len(), 6);
    }
}

//! `ipt degrade`: apply a task's recipe to clean images and write what the model would see.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ipt_degrade::files::{list_images, write_bytes_atomic, Depth};
use ipt_degrade::rain::RainSource;
use ipt_degrade::task::{lookup, with_defined};
use ipt_degrade::Task;

/// Arguments of `ipt degrade`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The task whose recipe to apply: built in (sr2, sr3, sr4, derain, denoise30, denoise50),
    /// shipped (denoise-blind, jpeg10…jpeg40, realsr4) or defined in `--tasks`.
    #[arg(long, value_name = "NAME")]
    pub task: String,
    /// Clean images, or folders of them (their image files, not sub-folders).
    #[arg(required = true, value_name = "IMAGES")]
    pub inputs: Vec<PathBuf>,
    /// Output folder: one PNG per input, `<stem>.png` (8-bit, rounded).
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of the recipe's random draws; each image's draws depend on the seed, the task and
    /// the image's file name only.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A TOML file whose `[[tasks.define]]` tables define more tasks (a config or a recipe file).
    #[arg(long, value_name = "TOML")]
    pub tasks: Option<PathBuf>,
    /// Folder of rain-streak layers for the `rain` op (default: the procedural generator).
    #[arg(long, value_name = "DIR")]
    pub rain_streaks: Option<PathBuf>,
    /// Also write the target (the clean image, cropped to a multiple of the scale) as
    /// `<stem>_target.png`.
    #[arg(long)]
    pub target: bool,
}

/// The task `name`, looked up among the built-in, `tasks_file`'s and the shipped tasks.
fn resolve_task(name: &str, tasks_file: Option<&Path>) -> anyhow::Result<Task> {
    let defined = match tasks_file {
        Some(f) => ipt_train::config::read_task_definitions(f)?,
        None => Vec::new(),
    };
    Ok(with_defined(&defined, || lookup(name))?)
}

/// Inputs expanded: files as given, folders to their image files in name order.
fn expand(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = list_images(input, Depth::Flat)
                .with_context(|| format!("cannot list {}", input.display()))?;
            if found.is_empty() {
                bail!("{}: no image files in this folder", input.display());
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(files)
}

/// Runs `ipt degrade`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let task = resolve_task(&args.task, args.tasks.as_deref())?;
    let rain = match &args.rain_streaks {
        Some(dir) => RainSource::from_folder(dir)?,
        None => RainSource::default(),
    };
    let files = expand(&args.inputs)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output folder {}", args.out.display()))?;
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut written = std::collections::HashSet::new();
    for file in &files {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let stem = file
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        if !written.insert(stem.clone()) {
            bail!(
                "{}: another input has the stem `{stem}`, so both would write {stem}.png",
                file.display()
            );
        }
        bar.set_message(name.clone());
        let clean = ipt_degrade::io::read_image(file)?;
        let (input, target) =
            ipt_degrade::synthesize::degrade_named(&clean, task, &rain, args.seed, &name)
                .with_context(|| format!("{}: task {task}", file.display()))?;
        let mut outputs = vec![(args.out.join(format!("{stem}.png")), input)];
        if args.target {
            outputs.push((args.out.join(format!("{stem}_target.png")), target));
        }
        for (path, img) in outputs {
            let bytes = ipt_degrade::io::encode_png(&path, &img)?;
            write_bytes_atomic(&path, &bytes)
                .map_err(|e| e.into_io_error())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "degraded {} image(s) by task {task} (scale {}, seed {}) into {}",
        files.len(),
        task.scale(),
        args.seed,
        args.out.display()
    );
    Ok(())
}

//! `ipt info CKPT` and `ipt convert IN OUT.{safetensors,pt}`: inspect and convert checkpoints
//! (official PyTorch `.pt` state dicts or this project's `.safetensors`, either way).

use std::path::PathBuf;

use anyhow::{bail, Context};
use ipt_degrade::Task;
use ipt_model::checkpoint::{self, InferOptions};
use ipt_model::IptConfig;
use tch::Device;

/// What the weights alone cannot tell (shared by `info` and `convert`).
#[derive(clap::Args, Debug, Clone)]
pub struct InferArgs {
    /// Attention heads (official files do not record it; default: the file's metadata, else 12).
    #[arg(long, value_name = "N")]
    pub num_heads: Option<usize>,
    /// The model adds the position embedding in every layer (official `--pos_every`).
    #[arg(long)]
    pub pos_every: bool,
}

impl InferArgs {
    fn options(&self) -> InferOptions {
        InferOptions {
            num_heads: self.num_heads,
            pos_every: self.pos_every,
            patch_size: None,
        }
    }
}

/// `ipt info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint (.pt or .safetensors).
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub infer: InferArgs,
    /// Also list every tensor with its shape and dtype.
    #[arg(long)]
    pub keys: bool,
}

/// `ipt convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Input checkpoint (.pt or .safetensors).
    pub input: PathBuf,
    /// Output file: .safetensors (the config is stored in its metadata), or .pt/.pth for a
    /// PyTorch state dict in the official layout (for torch.load, the official code, spandrel).
    pub output: PathBuf,
    #[command(flatten)]
    pub infer: InferArgs,
    /// Record what each task index is, comma-separated in index order (e.g. `denoise50`, or
    /// `sr2,sr3,sr4,derain,denoise30,denoise50`).
    #[arg(long, value_delimiter = ',', value_name = "TASKS")]
    pub tasks: Option<Vec<Task>>,
}

/// One line per task index: scale and, when known, the task (from [`IptConfig::task_map`]).
pub fn describe_tasks(config: &IptConfig) -> Vec<String> {
    config
        .task_map()
        .heads()
        .map(|head| {
            let what = match head.task {
                Some(t) => t.name().to_string(),
                None if head.scale == 1 => "denoise or derain (not recorded)".to_string(),
                None => format!("x{}", head.scale),
            };
            format!("  {}: scale {}, {what}", head.index, head.scale)
        })
        .collect()
}

/// Prints the config, the tasks and the parameter count, after checking that the file loads
/// strictly into the network it describes.
pub fn run_info(args: InfoArgs) -> anyhow::Result<()> {
    let path = &args.checkpoint;
    let sd = checkpoint::read_state_dict(path)?;
    let config = checkpoint::infer_config(&sd, &args.infer.options())
        .map_err(|msg| anyhow::anyhow!("{}: {msg}", path.display()))?;
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _model = ipt_model::Ipt::new(&vs.root(), &config)?;
    checkpoint::copy_into(&vs, &sd, path)
        .context("the file does not load into the model it describes")?;
    let from_meta = sd.metadata.contains_key(checkpoint::CONFIG_KEY);
    println!("file: {}", path.display());
    println!(
        "config ({}):",
        if from_meta {
            "from metadata"
        } else {
            "inferred from tensor shapes"
        }
    );
    println!("{}", serde_json::to_string_pretty(&config)?);
    println!(
        "d = {}, tokens = {}, feed-forward = {}",
        config.embedding_dim(),
        config.seq_len(),
        config.hidden_dim()
    );
    println!("tasks ({}):", config.num_tasks());
    for line in describe_tasks(&config) {
        println!("{line}");
    }
    println!(
        "tensors: {}, parameters: {} (excluding the position_ids buffer), of which trainable: {} \
         (without the mean-shift constants sub_mean/add_mean)",
        sd.tensors.len(),
        sd.num_parameters(),
        sd.num_trainable()
    );
    if args.keys {
        for (k, t) in &sd.tensors {
            println!("  {k} {:?} {:?}", t.size(), t.kind());
        }
    }
    Ok(())
}

/// Loads `input` strictly and writes it as safetensors with the config in the metadata, or as a
/// PyTorch state dict in the official layout (`.pt`, `.pth`).
pub fn run_convert(args: ConvertArgs) -> anyhow::Result<()> {
    let ext = args.output.extension().and_then(|e| e.to_str());
    let to_pytorch = matches!(ext, Some("pt" | "pth"));
    if !to_pytorch && ext != Some("safetensors") {
        bail!(
            "{}: the output must be a .safetensors file, or a .pt/.pth file for PyTorch",
            args.output.display()
        );
    }
    let mut loaded = checkpoint::load(&args.input, Device::Cpu, &args.infer.options())?;
    if to_pytorch {
        checkpoint::export_pt(&args.output, &loaded.vs)?;
        let config = &loaded.config;
        println!(
            "wrote {} (a torch.save state dict in the official layout: torch.load reads it)",
            args.output.display()
        );
        println!(
            "official code: python main.py --pretrain {} {}",
            args.output.display(),
            config.official_flags()
        );
        match config.spandrel_mismatch() {
            None => println!(
                "spandrel: loads it (its largest-scale head, ×{})",
                config.scales.iter().max().copied().unwrap_or(1)
            ),
            Some(why) => println!("spandrel: cannot load it faithfully: {why}"),
        }
        return Ok(());
    }
    if let Some(tasks) = args.tasks {
        loaded.config.tasks = Some(tasks);
        loaded
            .config
            .validate()
            .with_context(|| format!("--tasks for {}", args.input.display()))?;
    }
    checkpoint::save(&args.output, &loaded.vs, &loaded.config)?;
    println!(
        "wrote {} ({} tasks, scales {:?}, {} heads)",
        args.output.display(),
        loaded.config.num_tasks(),
        loaded.config.scales,
        loaded.config.num_heads
    );
    Ok(())
}

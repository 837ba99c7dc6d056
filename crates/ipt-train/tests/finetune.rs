//! Fine-tuning starts from the right head, tail and task-embedding row, and exports the official
//! single-task layout.

use std::path::{Path, PathBuf};

use ipt_degrade::Task;
use ipt_model::{Ipt, IptConfig};
use ipt_train::config::{ExperimentConfig, Mode};
use ipt_train::finetune::read_pretrained;
use ipt_train::{train, RunOptions};
use tch::{nn, Device, Kind, Tensor};

static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn single_task_model_reproduces_the_multitask_task() {
    let _g = serial();
    tch::manual_seed(3);
    let dir = tempfile::tempdir().unwrap();
    let cfg6 = IptConfig::tiny(&[2, 3, 4, 1, 1, 1]);
    let vs6 = nn::VarStore::new(Device::Cpu);
    let m6 = Ipt::new(&vs6.root(), &cfg6).unwrap();
    let path = dir.path().join("pre.safetensors");
    ipt_model::checkpoint::save(&path, &vs6, &cfg6).unwrap();
    let x = Tensor::rand([2, 3, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
    for (k, task) in Task::ALL.iter().enumerate() {
        let pre = read_pretrained(&path, *task, None).unwrap();
        let c1 = pre.single_task_config(*task);
        assert_eq!((c1.scales.clone(), c1.num_queries), (vec![task.scale()], 1));
        let vs1 = nn::VarStore::new(Device::Cpu);
        let m1 = Ipt::new(&vs1.root(), &c1).unwrap();
        pre.copy_task_into(&vs1, *task, &path).unwrap();
        let (y6, y1) = tch::no_grad(|| (m6.forward(&x, k, false), m1.forward(&x, 0, false)));
        let d = (y6 - y1).abs().max().double_value(&[]);
        assert_eq!(d, 0.0, "{task}: single-task output differs by {d}");
    }
    // A 6-query checkpoint with a wrong task list is refused.
    assert!(read_pretrained(&path, Task::Sr2, Some(&[Task::Sr2])).is_err());
}

#[test]
fn finetune_run_exports_a_single_task_checkpoint() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let pre_dir = dir.path().join("pre");
    let pre_cfg = ExperimentConfig::from_toml_str(
        "[model]\npreset = \"tiny\"\n[data]\nimages = 8\n[optim]\nbatch_size = 2\nsteps = 2\n\
         [validation]\nevery = 0\n[runtime]\nthreads = 1\n",
        Path::new("pre.toml"),
    )
    .unwrap();
    let opts = |run_dir: PathBuf, mode| RunOptions {
        config_path: PathBuf::from("x.toml"),
        run_dir,
        mode,
        stop_after: None,
        verbose: false,
        roots: ipt_train::DataRoots::default(),
        stop: Default::default(),
        distributed: None,
    };
    let pre = train(&pre_cfg, &opts(pre_dir.clone(), Mode::Pretrain)).unwrap();
    let ck = pre.last_checkpoint.unwrap();
    let ft_cfg = ExperimentConfig::from_toml_str(
        &format!(
            "[finetune]\ntask = \"denoise30\"\nfrom = \"{}\"\n[data]\nimages = 8\n\
             [optim]\nbatch_size = 2\nsteps = 2\n[validation]\nevery = 2\nimages = 1\n\
             [runtime]\nthreads = 1\n",
            ck.display()
        ),
        Path::new("ft.toml"),
    )
    .unwrap();
    let ft = train(&ft_cfg, &opts(dir.path().join("ft"), Mode::Finetune)).unwrap();
    assert_eq!(ft.end_step, 2);
    let out = ft.exported.expect("exported checkpoint");
    let loaded = ipt_model::checkpoint::load(&out, Device::Cpu, &Default::default()).unwrap();
    assert_eq!(loaded.config.scales, vec![1]);
    assert_eq!(loaded.config.num_queries, 1);
    let sd = ipt_model::checkpoint::read_state_dict(&out).unwrap();
    assert!(sd.tensors.iter().any(|(k, _)| k.starts_with("head.0.")));
    assert!(!sd.tensors.iter().any(|(k, _)| k.starts_with("head.1.")));
    // λ = 0 when fine-tuning: the logged contrastive term is not part of the loss.
    let rows = std::fs::read_to_string(dir.path().join("ft/metrics.jsonl")).unwrap();
    assert!(rows.contains("\"validation\""));
}

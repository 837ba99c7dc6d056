//! Fine-tuning starts from the right head, tail and task-embedding row, and exports the official
//! single-task layout.

use std::path::{Path, PathBuf};

use ipt_degrade::Task;
use ipt_model::{Ipt, IptConfig};
use ipt_train::config::{ExperimentConfig, Mode};
use ipt_train::finetune::{read_pretrained, HeadInit};
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
    for (k, task) in Task::OFFICIAL.iter().enumerate() {
        let pre = read_pretrained(&path, *task, HeadInit::Task(*task), None).unwrap();
        let c1 = pre.single_task_config(*task);
        assert_eq!((c1.scales.clone(), c1.num_queries), (vec![task.scale()], 1));
        let vs1 = nn::VarStore::new(Device::Cpu);
        let m1 = Ipt::new(&vs1.root(), &c1).unwrap();
        pre.copy_task_into(&vs1, HeadInit::Task(*task), &path)
            .unwrap();
        let (y6, y1) = tch::no_grad(|| (m6.forward(&x, k, false), m1.forward(&x, 0, false)));
        let d = (y6 - y1).abs().max().double_value(&[]);
        assert_eq!(d, 0.0, "{task}: single-task output differs by {d}");
    }
    // A 6-query checkpoint with a wrong task list is refused.
    assert!(read_pretrained(
        &path,
        Task::Sr2,
        HeadInit::Task(Task::Sr2),
        Some(&[Task::Sr2])
    )
    .is_err());
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

/// The tasks-as-data path end to end: tasks written in TOML are pre-trained (and validated),
/// recorded in the checkpoint with their recipes, and a new task is fine-tuned from an existing
/// head or from scratch, its one-task export knowing what it is.
#[test]
fn tasks_defined_in_toml_pretrain_and_finetune() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let defines = "[[tasks.define]]\nname = \"jpeg20\"\nscale = 1\n\
                   recipe = [{ op = \"jpeg\", quality = [15, 25] }]\n\
                   [[tasks.define]]\nname = \"blur2\"\nscale = 2\n\
                   recipe = [{ op = \"blur\", size = 7, sigma = [0.5, 1.5] }, { op = \"downscale\" }, \
                   { op = \"quantize\" }]\n";
    let pre_cfg = ExperimentConfig::from_toml_str(
        &format!(
            "[model]\npreset = \"tiny\"\n[tasks]\nnames = [\"sr2\", \"jpeg20\"]\n{defines}\
             [data]\nimages = 8\n[optim]\nbatch_size = 2\nsteps = 2\n\
             [validation]\nevery = 2\nimages = 1\n[runtime]\nthreads = 1\n"
        ),
        Path::new("pre.toml"),
    )
    .unwrap();
    let jpeg20 = pre_cfg.tasks.names[1];
    assert_eq!((jpeg20.name(), jpeg20.scale()), ("jpeg20", 1));
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
    let pre = train(&pre_cfg, &opts(dir.path().join("pre"), Mode::Pretrain)).unwrap();
    let ck = pre.last_checkpoint.unwrap();
    let loaded = ipt_model::checkpoint::load(&ck, Device::Cpu, &Default::default()).unwrap();
    assert_eq!(loaded.config.tasks, Some(vec![Task::Sr2, jpeg20]));
    assert_eq!(loaded.config.task_map().index_of_name("jpeg20"), Some(1));
    let rows = std::fs::read_to_string(dir.path().join("pre/metrics.jsonl")).unwrap();
    assert!(
        rows.contains("jpeg20"),
        "validation scores the new task: {rows}"
    );

    for (init, expect_copied) in [("sr2", true), ("random", false)] {
        let ft_cfg = ExperimentConfig::from_toml_str(
            &format!(
                "{defines}[finetune]\ntask = \"blur2\"\ninit = \"{init}\"\nfrom = \"{}\"\n\
                 [data]\nimages = 8\n[optim]\nbatch_size = 2\nsteps = 1\n[validation]\nevery = 0\n\
                 [runtime]\nthreads = 1\nseed = 7\n",
                ck.display()
            ),
            Path::new("ft.toml"),
        )
        .unwrap();
        let run = dir.path().join(format!("ft-{init}"));
        let ft = train(&ft_cfg, &opts(run.clone(), Mode::Finetune)).unwrap();
        let out = ft.exported.expect("exported checkpoint");
        let model = ipt_model::checkpoint::load(&out, Device::Cpu, &Default::default()).unwrap();
        let blur2 = model.config.tasks.clone().unwrap();
        assert_eq!(blur2.len(), 1);
        assert_eq!((blur2[0].name(), blur2[0].scale()), ("blur2", 2));
        assert!(!blur2[0].is_official());
        // Another seed than the pre-training's: a fresh head is far from sr2's, a copied one
        // moved by one small step.
        let pre_sd = ipt_model::checkpoint::read_state_dict(&ck).unwrap();
        let ft_sd = ipt_model::checkpoint::read_state_dict(&out).unwrap();
        let get = |sd: &ipt_model::checkpoint::StateDict, k: &str| {
            sd.tensors
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, t)| t.shallow_clone())
                .unwrap()
        };
        let diff = (get(&ft_sd, "head.0.0.weight") - get(&pre_sd, "head.0.0.weight"))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(
            diff < 0.01,
            expect_copied,
            "init {init}: head differs by {diff}"
        );
    }

    // A task the checkpoint does not hold needs `init`; a tail cannot change its scale.
    for (init, msg) in [
        ("", "has no head for task blur2"),
        ("init = \"jpeg20\"\n", "cannot change its scale"),
    ] {
        let ft_cfg = ExperimentConfig::from_toml_str(
            &format!(
                "{defines}[finetune]\ntask = \"blur2\"\n{init}from = \"{}\"\n[data]\nimages = 8\n\
                 [optim]\nbatch_size = 2\nsteps = 1\n[validation]\nevery = 0\n[runtime]\nthreads = 1\n",
                ck.display()
            ),
            Path::new("ft.toml"),
        )
        .unwrap();
        let err = train(&ft_cfg, &opts(dir.path().join("ft-bad"), Mode::Finetune))
            .unwrap_err()
            .to_string();
        assert!(err.contains(msg), "{err}");
    }
}

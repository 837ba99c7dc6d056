//! Tests of reading and checking configs.

use super::*;
use ipt_degrade::Task;
use ipt_model::IptConfig;

fn parse(s: &str) -> Result<ExperimentConfig, ConfigError> {
    ExperimentConfig::from_toml_str(s, Path::new("test.toml"))
}

#[test]
fn empty_file_is_refused_and_the_defaults_are_the_paper_recipe() {
    for empty in ["", "# only a comment\n\n"] {
        let err = parse(empty).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
    let c = parse("name = \"paper\"\n").unwrap();
    assert_eq!(c.model.preset, ModelPreset::Base);
    assert_eq!(c.optim.batch_size, 64);
    assert_eq!(c.optim.lr, 5e-5);
    assert_eq!(c.optim.milestones, vec![200]);
    assert_eq!(c.optim.gamma, 0.5);
    assert_eq!(c.optim.epochs, 300);
    assert_eq!(c.loss.tau, 0.07);
    assert_eq!(c.lambda(Mode::Pretrain), 0.1);
    assert_eq!(c.lambda(Mode::Finetune), 0.0);
    assert_eq!(c.tasks.names, Task::OFFICIAL.to_vec());
    assert_eq!(c.optim.clip, ClipMode::PerTensor);
    assert!(!c.augment(Mode::Pretrain));
    assert!(c.augment(Mode::Finetune));
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = parse("[optim]\nlr = 1e-4\nbatchsize = 3\n").unwrap_err();
    let msg = err.to_string();
    match err {
        ConfigError::Parse { line, key, .. } => {
            assert_eq!(line, 3, "{msg}");
            assert!(key.starts_with("optim"), "{msg}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(msg.contains("batchsize"), "{msg}");
}

#[test]
fn wrong_type_names_key_and_line() {
    let err = parse("\n[data]\nworkers = \"two\"\n").unwrap_err();
    let msg = err.to_string();
    match err {
        ConfigError::Parse { line, key, .. } => {
            assert_eq!(line, 3, "{msg}");
            assert_eq!(key, "data.workers", "{msg}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn unknown_task_is_an_error() {
    let err = parse("[tasks]\nnames = [\"sr5\"]\n").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { line: 2, .. }), "{err}");
}

#[test]
fn weights_must_match_tasks() {
    let err = parse("[tasks]\nnames = [\"sr2\"]\nweights = [1.0, 2.0]\n").unwrap_err();
    assert!(err.to_string().contains("tasks.weights"), "{err}");
}

#[test]
fn folder_source_needs_a_path_and_missing_path_fails() {
    let err = parse("[data]\nsource = \"folder\"\n").unwrap_err();
    assert!(err.to_string().contains("data.path"), "{err}");
    let c = parse("[data]\nsource = \"folder\"\npath = \"/nonexistent/imagenet\"\n").unwrap();
    let err = c
        .check_paths(&DataRoots::default(), Path::new("x.toml"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/imagenet") && msg.contains("data.path"),
        "{msg}"
    );
    // An existing file where a folder is expected is said to be one, not called missing.
    let file = tempfile::NamedTempFile::new().unwrap();
    let c = parse(&format!(
        "[data]\nsource = \"folder\"\npath = \"{}\"\n",
        file.path().display()
    ))
    .unwrap();
    let msg = c
        .check_paths(&DataRoots::default(), Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("is not a folder") && !msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn resolved_config_round_trips() {
    let c = parse(
        "name = \"x\"\n[model]\npreset = \"tiny\"\nnum_layers = 2\n\
         [tasks]\nnames = [\"sr2\", \"denoise30\"]\nweights = [1.0, 3.0]\n\
         [finetune]\ntask = \"sr2\"\nfrom = \"a.safetensors\"\n",
    )
    .unwrap();
    let text = c.to_toml();
    let back = parse(&text).unwrap();
    assert_eq!(c, back, "{text}");
}

#[test]
fn model_fields_override_the_preset_and_tasks_are_recorded() {
    let c = parse(
        "[model]\npreset = \"small\"\nnum_layers = 3\n[tasks]\nnames = [\"sr3\", \"denoise30\", \"denoise50\"]\n[data]\npatch = 24\n",
    )
    .unwrap();
    let net = c.network(Path::new("t.toml")).unwrap();
    let small = IptConfig::small(&[3, 1, 1]);
    assert_eq!(net.num_layers, 3);
    assert_eq!(
        (net.n_feats, net.patch_dim),
        (small.n_feats, small.patch_dim)
    );
    assert_eq!(net.patch_size, 24);
    assert_eq!(net.scales, vec![3, 1, 1]);
    assert_eq!(
        net.tasks,
        Some(vec![Task::Sr3, Task::Denoise30, Task::Denoise50])
    );
    // Denoise 30 and 50 share scale 1: the recorded tasks tell them apart.
    assert_eq!(net.task_map().index_of(Task::Denoise50), Some(2));
    let err = parse("[model]\nnum_layer = 3\n").unwrap_err();
    assert!(err.to_string().contains("num_layer"), "{err}");
    let err = parse("[runtime]\ndevice = \"tpu\"\n").unwrap_err();
    assert!(err.to_string().contains("runtime.device"), "{err}");
}

#[test]
fn data_roots_expand_only_known_prefixes() {
    let roots = DataRoots {
        bench: PathBuf::from("/b"),
        train: PathBuf::from("t"),
    };
    assert_eq!(
        roots.expand(Path::new("${IPT_DATA}/Set5")).unwrap(),
        PathBuf::from("/b/Set5")
    );
    assert_eq!(
        roots.expand(Path::new("${IPT_TRAIN_DATA}")).unwrap(),
        PathBuf::from("t")
    );
    assert_eq!(
        roots.expand(Path::new("data/x")).unwrap(),
        PathBuf::from("data/x")
    );
    assert!(roots
        .expand(Path::new("${HOME}/x"))
        .unwrap_err()
        .contains("HOME"));
    let c = parse("[validation]\npath = \"${NOPE}/Set5\"\n").unwrap();
    let err = c.check_paths(&roots, Path::new("c.toml")).unwrap_err();
    assert!(err.to_string().contains("validation.path"), "{err}");
    let c = parse("[validation]\npath = \"${IPT_DATA}/Set5\"\nsize = \"whole\"\n").unwrap();
    assert_eq!(c.validation.size, ValidationSize::Whole(WholeImages::Whole));
    let err = c.check_paths(&roots, Path::new("c.toml")).unwrap_err();
    assert!(err.to_string().contains("/b/Set5"), "{err}");
    assert!(parse("[validation]\nsize = \"whole\"\n").is_err());
}

#[test]
fn other_ipt_roots_come_from_the_environment() {
    let roots = DataRoots {
        bench: PathBuf::from("/b"),
        train: PathBuf::from("t"),
    };
    // A variable no other test reads.
    std::env::set_var("IPT_TEST_ROOT_SET", "/imagenet");
    assert_eq!(
        roots.expand(Path::new("${IPT_TEST_ROOT_SET}/a")).unwrap(),
        PathBuf::from("/imagenet/a")
    );
    let err = roots
        .expand(Path::new("${IPT_TEST_ROOT_UNSET}/a"))
        .unwrap_err();
    assert!(err.contains("IPT_TEST_ROOT_UNSET is not set"), "{err}");
}

#[test]
fn data_fraction_must_lie_in_the_unit_interval() {
    for bad in ["0.0", "-0.5", "1.5", "nan"] {
        let err = parse(&format!("[data]\nfraction = {bad}\n")).unwrap_err();
        assert!(err.to_string().contains("data.fraction"), "{bad}: {err}");
    }
    let c = parse("[data]\nfraction = 0.25\nsmall_images = \"resize\"\n").unwrap();
    assert_eq!(c.data.fraction, 0.25);
    assert_eq!(c.data.small_images, SmallImages::Resize);
    assert!(parse("[data]\nsmall_images = \"stretch\"\n").is_err());
}

#[test]
fn small_embedded_images_are_rejected() {
    let err = parse("[data]\nimage_size = 100\n").unwrap_err();
    assert!(err.to_string().contains("192"), "{err}");
}

#[test]
fn schedule_ema_and_best_keys_are_checked() {
    let key_of = |text: &str| match parse(text).unwrap_err() {
        ConfigError::Invalid { key, message, .. } => format!("{key}: {message}"),
        other => panic!("unexpected {other}"),
    };
    for (text, key) in [
        ("[optim]\nema_decay = 1.0\n", "optim.ema_decay"),
        ("[optim]\nema_decay = 0.0\n", "optim.ema_decay"),
        ("[optim]\nlr = 1e-4\nmin_lr = 1e-3\n", "optim.min_lr"),
        ("[optim]\nmin_lr = -1.0\n", "optim.min_lr"),
        (
            "[optim]\nsteps = 10\nwarmup_steps = 10\n",
            "optim.warmup_steps",
        ),
        (
            "[checkpoint]\nkeep_best = \"sr4\"\n[tasks]\nnames = [\"sr2\"]\n",
            "checkpoint.keep_best",
        ),
        (
            "[checkpoint]\nkeep_best = \"sr2\"\n[validation]\nevery = 0\n",
            "checkpoint.keep_best",
        ),
    ] {
        let got = key_of(text);
        assert!(got.starts_with(key), "{text:?}: {got}");
    }
    let e = parse("[optim]\nschedule = \"linear\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("schedule") && e.contains("cosine"), "{e}");
    let c = parse(
        "[optim]\nschedule = \"cosine\"\nmin_lr = 1e-6\nwarmup_steps = 5\nema_decay = 0.999\n\
         [checkpoint]\nkeep_best = \"denoise30\"\n",
    )
    .unwrap();
    assert_eq!(c.optim.schedule, ScheduleKind::Cosine);
    assert_eq!(c.optim.ema_decay, Some(0.999));
    assert_eq!(c.checkpoint.keep_best, Some(Task::Denoise30));
    let back = parse(&c.to_toml()).unwrap();
    assert_eq!(back, c, "the resolved config round-trips");
}

#[test]
fn every_number_has_a_range_and_names_stay_inside_runs() {
    let key_of = |text: &str| match parse(text).unwrap_err() {
        ConfigError::Invalid { key, message, .. } => format!("{key}: {message}"),
        other => panic!("{text:?}: unexpected {other}"),
    };
    for (text, key) in [
        ("[loss]\nlambda = nan\n", "loss.lambda"),
        ("[loss]\nlambda = -1.0\n", "loss.lambda"),
        ("[loss]\nlambda = inf\n", "loss.lambda"),
        ("[loss]\ntau = inf\n", "loss.tau"),
        ("[loss]\nchunk = 0\n", "loss.chunk"),
        ("[runtime]\nthreads = 0\n", "runtime.threads"),
        ("[runtime]\nthreads = 100000\n", "runtime.threads"),
        ("[model]\nnum_layers = 0\n", "model.num_layers"),
        ("[model]\nnum_heads = 0\n", "model.num_heads"),
        ("[model]\ndropout = 1.0\n", "model.dropout"),
        ("[optim]\nmilestones = [100, 100]\n", "optim.milestones"),
        ("[optim]\nmilestones = [200, 100]\n", "optim.milestones"),
        ("[optim]\nmilestone_steps = [0]\n", "optim.milestone_steps"),
        ("name = \"../../escaped\"\n", "name"),
        ("name = \"a/b\"\n", "name"),
        ("name = \"..\"\n", "name"),
        ("name = \"\"\n", "name"),
        ("name = \"a\\\\b\"\n", "name"),
    ] {
        let got = key_of(text);
        assert!(got.starts_with(key), "{text:?}: {got}");
    }
    let c = parse(
        "name = \"ok-run_1.v2\"\n[loss]\nlambda = 0.0\n[runtime]\nthreads = 1024\n\
         [optim]\nmilestones = [1, 2, 300]\n[model]\nnum_layers = 1\n",
    )
    .unwrap();
    assert_eq!(c.runtime.threads, Some(MAX_THREADS));
}

#[test]
fn syntax_errors_and_validation_sizes_are_said_in_words() {
    let e = parse("name = \"x\"\n[optim\nlr = 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("test.toml:2:") && !e.contains("key `.`"),
        "{e}"
    );
    for bad in ["\"big\"", "-3"] {
        let e = parse(&format!("[validation]\nsize = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("validation.size") && e.contains("\"whole\"") && !e.contains("untagged"),
            "{e}"
        );
    }
    let c = parse("[validation]\nsize = 32\n").unwrap();
    assert_eq!(c.validation.size, ValidationSize::Crop(32));
    let c = parse("[validation]\nsize = \"whole\"\npath = \"x\"\n").unwrap();
    assert_eq!(c.validation.size, ValidationSize::Whole(WholeImages::Whole));
}

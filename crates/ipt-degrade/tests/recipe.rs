//! Tasks as data: recipes parsed from TOML, checked, applied; task definitions and their
//! serialized forms.

use ipt_degrade::rain::RainSource;
use ipt_degrade::recipe::{Context, Op, Param, Recipe};
use ipt_degrade::task::{TaskDef, TaskError};
use ipt_degrade::{Image, Rng8, Task};
use ndarray::Array3;
use rand::SeedableRng;

fn image(h: usize, w: usize) -> Image {
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        ((x * 7 + y * 13 + c * 50) % 256) as f32
    })
}

fn def(toml_text: &str) -> Result<TaskDef, toml::de::Error> {
    toml::from_str(toml_text)
}

fn degrade(task: Task, hr: &Image, seed: u64) -> (Image, Image) {
    let rain = RainSource::default();
    let ctx = Context {
        scale: task.scale(),
        rain: &rain,
    };
    task.recipe()
        .degrade(hr, ctx, &mut Rng8::seed_from_u64(seed))
        .unwrap()
}

#[test]
fn a_task_defined_in_toml_degrades_by_its_recipe() {
    let d = def(r#"
        name = "blur-noise-x2"
        scale = 2
        recipe = [
          { op = "blur", size = [7, 21], sigma = [0.2, 3], sigma_y = [0.2, 3], angle = [-180, 180] },
          { op = "downscale", kernel = ["area", "bilinear", "bicubic"] },
          { op = "noise", sigma = [1, 30], grey = 0.4, probability = 0.5 },
          { op = "chain", shuffle = true, steps = [{ op = "jpeg", quality = [30, 95] }, { op = "quantize" }] },
        ]
    "#)
    .unwrap();
    let task = Task::define(def_clone(&d)).unwrap();
    assert_eq!(
        task,
        Task::define(d).unwrap(),
        "equal definitions are one task"
    );
    assert!(!task.is_official());
    let hr = image(97, 64);
    let (lr, target) = degrade(task, &hr, 3);
    assert_eq!(target.dim(), (3, 96, 64), "modcropped to the scale");
    assert_eq!(lr.dim(), (3, 48, 32));
    assert!(lr
        .iter()
        .all(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0));
    // Seeded: the same seed gives the same input, another seed another one.
    assert_eq!(degrade(task, &hr, 3).0, lr);
    assert_ne!(degrade(task, &hr, 4).0, lr);
}

fn def_clone(d: &TaskDef) -> TaskDef {
    d.clone()
}

#[test]
fn the_jpeg_op_is_the_libjpeg_turbo_round_trip() {
    let task = Task::define(
        def("name = \"jpeg-q10\"\nscale = 1\nrecipe = [{ op = \"jpeg\", quality = 10 }]").unwrap(),
    )
    .unwrap();
    let hr = image(50, 61);
    let (lr, target) = degrade(task, &hr, 0);
    assert_eq!(target, hr);
    assert_eq!(lr, ipt_degrade::jpeg::jpeg_round_trip(&hr, 10).unwrap());
    assert_ne!(lr, hr);
}

#[test]
fn unknown_ops_and_keys_are_errors_naming_them_and_their_line() {
    let e = def("name = \"t\"\nscale = 1\nrecipe = [\n  { op = \"blurr\", sigma = 1 },\n]")
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("blurr") && msg.contains("line 4"), "{msg}");
    let e = def("name = \"t\"\nscale = 1\nrecipe = [{ op = \"noise\", sigma = 5, sgima = 3 }]")
        .unwrap_err();
    assert!(e.to_string().contains("sgima"), "{e}");
    let e = def("name = \"t\"\nscale = 1\nrecipe = [{ op = \"noise\", sigma = \"high\" }]")
        .unwrap_err();
    assert!(
        e.to_string().contains("a number or a [low, high] range"),
        "{e}"
    );
}

#[test]
fn bad_parameters_are_refused_naming_the_step() {
    let check = |text: &str| Task::define(def(text).unwrap()).unwrap_err().to_string();
    let msg = check("name = \"t\"\nscale = 1\nrecipe = [{ op = \"noise\", sigma = 5 }, { op = \"jpeg\", quality = 0 }]");
    assert!(
        msg.contains("step 2 (jpeg): quality 0 is outside 1..=100"),
        "{msg}"
    );
    let msg = check("name = \"t\"\nscale = 1\nrecipe = [{ op = \"noise\", sigma = [50, 10] }]");
    assert!(msg.contains("low end above its high end"), "{msg}");
    let msg = check("name = \"t\"\nscale = 1\nrecipe = [{ op = \"blur\", size = 4, sigma = 1 }]");
    assert!(msg.contains("size 4 must be an odd integer"), "{msg}");
    let msg = check("name = \"t\"\nscale = 1\nrecipe = [{ op = \"keep\", probability = 1.5 }]");
    assert!(msg.contains("probability 1.5"), "{msg}");
    let msg = check("name = \"t\"\nscale = 2\nrecipe = [{ op = \"noise\", sigma = 5 }]");
    assert!(msg.contains("never resizes"), "{msg}");
    let msg = check("name = \"t\"\nscale = 1\nrecipe = []");
    assert!(msg.contains("has no steps"), "{msg}");
    let msg = check("name = \"2x\"\nscale = 1\nrecipe = [{ op = \"keep\" }]");
    assert!(msg.contains("starting with a letter"), "{msg}");
    assert_eq!(
        Task::define(def("name = \"sr2\"\nscale = 1\nrecipe = [{ op = \"keep\" }]").unwrap()),
        Err(TaskError::Builtin("sr2".into()))
    );
}

#[test]
fn a_recipe_that_misses_the_scale_is_an_error_when_applied() {
    let task = Task::define(
        def("name = \"half\"\nscale = 2\nrecipe = [{ op = \"resize\", factor = 0.25 }]").unwrap(),
    )
    .unwrap();
    let rain = RainSource::default();
    let ctx = Context {
        scale: 2,
        rain: &rain,
    };
    let err = task
        .recipe()
        .degrade(&image(40, 40), ctx, &mut Rng8::seed_from_u64(0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("40×40 patch into 10×10") && err.contains("20×20"),
        "{err}"
    );
}

#[test]
fn official_tasks_serialize_as_names_and_others_as_definitions() {
    let jpeg = Task::define(
        def("name = \"jpeg21\"\nscale = 1\nrecipe = [{ op = \"jpeg\", quality = 21 }]").unwrap(),
    )
    .unwrap();
    let json = serde_json::to_string(&[Task::Sr2, jpeg]).unwrap();
    assert_eq!(
        json,
        r#"["sr2",{"name":"jpeg21","scale":1,"recipe":[{"op":"jpeg","quality":21.0}]}]"#
    );
    let back: Vec<Task> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, vec![Task::Sr2, jpeg]);
    // A definition equal to a built-in one is the built-in task.
    let sr2: Task = serde_json::from_str(
        r#"{"name":"sr2","scale":2,"recipe":[{"op":"downscale"},{"op":"quantize"}]}"#,
    )
    .unwrap();
    assert!(sr2.is_official());
    assert_eq!(sr2, Task::Sr2);
    // Names resolve to built-in tasks, or to tasks in scope.
    assert!(serde_json::from_str::<Task>(r#""jpeg21""#).is_err());
    let named: Task =
        ipt_degrade::task::with_defined(&[jpeg], || serde_json::from_str(r#""jpeg21""#)).unwrap();
    assert_eq!(named, jpeg);
}

#[test]
fn the_official_recipes_describe_the_official_degradations() {
    assert_eq!(Task::Denoise30.sigma(), Some(30.0));
    assert_eq!(Task::Denoise50.sigma(), Some(50.0));
    assert_eq!(Task::Sr2.sigma(), None);
    assert!(matches!(Task::Derain.recipe().0[0].op, Op::Rain));
    let blind = Task::define(
        def("name = \"blind\"\nscale = 1\nrecipe = [{ op = \"noise\", sigma = [0, 55] }]").unwrap(),
    )
    .unwrap();
    assert_eq!(blind.sigma(), None, "a drawn sigma is not a fixed level");
    match &blind.recipe().0[0].op {
        Op::Noise { sigma, .. } => assert_eq!(*sigma, Param::Range(0.0, 55.0)),
        other => panic!("{other:?}"),
    }
    let _: &Recipe = Task::Sr4.recipe();
    assert!(Task::OFFICIAL.iter().all(|t| t.def().check().is_ok()));
}

#[test]
fn one_of_and_probability_draw_from_the_generator() {
    let task = Task::define(
        def(r#"
            name = "sometimes"
            scale = 1
            recipe = [{ op = "one-of", weights = [1, 3], steps = [{ op = "keep" }, { op = "noise", sigma = 20 }] }]
        "#)
        .unwrap(),
    )
    .unwrap();
    let hr = image(16, 16);
    let noisy = (0..200).filter(|&s| degrade(task, &hr, s).0 != hr).count();
    assert!(
        (120..=180).contains(&noisy),
        "{noisy} of 200 noisy, expected about 150"
    );
}

#[test]
fn the_shipped_recipes_parse_and_run() {
    let shipped = ipt_degrade::task::parse_shipped().unwrap();
    let names: Vec<&str> = shipped.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "denoise-blind",
            "jpeg10",
            "jpeg20",
            "jpeg30",
            "jpeg40",
            "realsr4"
        ]
    );
    assert_eq!(ipt_degrade::task::shipped(), &shipped[..]);
    for task in shipped {
        assert_eq!(ipt_degrade::task::lookup(task.name()).unwrap(), task);
        let hr = image(task.hr_patch(48), task.hr_patch(48));
        for seed in 0..8 {
            let (lr, target) = degrade(task, &hr, seed);
            assert_eq!(target, hr);
            assert_eq!(lr.dim(), (3, 48, 48), "{task}, seed {seed}");
            assert!(lr.iter().all(|v| (0.0..=255.0).contains(v)));
        }
    }
}

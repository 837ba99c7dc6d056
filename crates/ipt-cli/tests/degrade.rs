//! `ipt degrade`: a task's recipe applied to clean images, seeded per image, written as PNG;
//! tasks built in, shipped or defined in a TOML file; errors in words.

mod common;
use common::{ipt, s, text};

use ipt_degrade::io::{read_image, write_png};
use ipt_degrade::rain::RainSource;
use ipt_degrade::{quantize, Image, Task};
use ndarray::Array3;

fn clean(h: usize, w: usize, seed: usize) -> Image {
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        ((x * 7 + y * 13 + c * 50 + seed * 31 + (x * y) % 17) % 256) as f32
    })
}

#[test]
fn degrade_writes_what_the_recipe_makes_at_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
    write_png(&a, &clean(49, 50, 1)).unwrap();
    write_png(&b, &clean(40, 36, 2)).unwrap();
    let out = dir.path().join("out");
    for task in ["sr3", "jpeg20", "denoise-blind", "realsr4"] {
        let o = ipt(&[
            "degrade",
            "--task",
            task,
            s(&a),
            s(&b),
            "-o",
            s(&out),
            "--seed",
            "5",
            "--target",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let t: Task = ipt_degrade::task::lookup(task).unwrap();
        for (file, name) in [(&a, "a"), (&b, "b")] {
            let hr = read_image(file).unwrap();
            let fname = file.file_name().unwrap().to_str().unwrap();
            let (lr, target) =
                ipt_degrade::synthesize::degrade_named(&hr, t, &RainSource::default(), 5, fname)
                    .unwrap();
            let got = read_image(&out.join(format!("{name}.png"))).unwrap();
            assert_eq!(got, quantize(&lr), "{task} {name}");
            assert_eq!(
                read_image(&out.join(format!("{name}_target.png"))).unwrap(),
                target
            );
        }
    }
}

#[test]
fn degrade_takes_tasks_from_a_toml_file_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.png");
    write_png(&img, &clean(32, 32, 3)).unwrap();
    let out = dir.path().join("out");
    let recipes = dir.path().join("mine.toml");
    std::fs::write(
        &recipes,
        "[[tasks.define]]\nname = \"dark\"\nscale = 1\nrecipe = [{ op = \"noise\", sigma = 10, grey = 1 }]\n",
    )
    .unwrap();
    let o = ipt(&[
        "degrade",
        "--task",
        "dark",
        "--tasks",
        s(&recipes),
        s(&img),
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let got = read_image(&out.join("x.png")).unwrap();
    // Grey noise: the same change on every channel (before rounding and clipping, so nearly).
    let d: Vec<f32> = (0..3)
        .map(|c| got[[c, 5, 5]] - clean(32, 32, 3)[[c, 5, 5]])
        .collect();
    assert!(
        (d[0] - d[1]).abs() <= 1.0 && (d[1] - d[2]).abs() <= 1.0,
        "{d:?}"
    );

    let o = ipt(&["degrade", "--task", "dark", s(&img), "-o", s(&out)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown task \"dark\""), "{}", text(&o));

    std::fs::write(&recipes, "[[tasks.define]]\nname = \"dark\"\nscale = 1\nrecipe = [\n  { op = \"nosie\", sigma = 10 },\n]\n").unwrap();
    let o = ipt(&[
        "degrade",
        "--task",
        "dark",
        "--tasks",
        s(&recipes),
        s(&img),
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("mine.toml") && msg.contains("nosie") && msg.contains("mine.toml:5:"),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
}

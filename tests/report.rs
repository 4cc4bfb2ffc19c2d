//! A tiny study end to end on synthetic data: train variants, evaluate, report; the
//! report's table matches the metrics files, its images exist, a title edit reruns only the
//! report, and the TensorBoard files read back with the real `tensorboard` package.

mod util;

use util::{learnable, python_has, sorted, Project};

fn study() -> Project {
    let p = Project::new();
    learnable(&p.path().join("src-data"), 40, 50);
    p.write(
        "pipelines/mini.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 40)),
            (name: "train", kind: "train", inputs: ["data"],
             config: (model: Linear(), epochs: 6, batch_size: 16, optimizer: (lr: 0.01), seed: 42),
             vary: {"optimizer.momentum": [0.5, 0.9]}),
            (name: "eval", kind: "evaluate", inputs: ["train", "data"]),
            (name: "report", kind: "report", inputs: ["eval"], target: "reports/mini.md", config: (title: "Mini momentum study")),
        ])"#,
    );
    p
}

/// The index of the Results table's column headed `name`.
fn col(md: &str, name: &str) -> usize {
    let results = md.split("## Results").nth(1).unwrap();
    let head = results
        .lines()
        .find(|l| l.starts_with("| variant |"))
        .unwrap();
    let cells: Vec<&str> = head.trim_matches('|').split('|').map(str::trim).collect();
    cells
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("no column {name}: {head}"))
}

/// The cells of the Results table row whose first cell is `variant`.
fn row<'a>(md: &'a str, variant: &str) -> Vec<&'a str> {
    let results = md.split("## Results").nth(1).unwrap();
    let line = results
        .lines()
        .find(|l| l.starts_with(&format!("| {variant} |")))
        .unwrap_or_else(|| panic!("no row {variant}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

fn metrics(p: &Project, variant: &str) -> Vec<serde_json::Value> {
    let stage = if variant == "base" {
        "mini:eval".to_string()
    } else {
        format!("mini:eval[{variant}]")
    };
    let text = std::fs::read_to_string(p.outputs(&stage).join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_tiny_study_reports_tables_that_match_its_metrics() {
    let p = study();
    p.ok(&["build", "reports/mini.md"]);
    let md = p.read("reports/mini.md");
    assert!(md.starts_with("# Mini momentum study"), "{md}");
    for variant in ["base", "optimizer.momentum=0.5", "optimizer.momentum=0.9"] {
        let m = metrics(&p, variant);
        let (best_epoch, best) = m
            .iter()
            .map(|e| (e["epoch"].as_u64().unwrap(), e["val_acc"].as_f64().unwrap()))
            .fold((0, -1.0), |b, x| if x.1 > b.1 { x } else { b });
        let last = m.last().unwrap();
        let cells = row(&md, variant);
        // variant | momentum | status | seeds | test acc (final) | best val acc | test acc (best val) | best epoch | final train acc | final val acc | …
        assert_eq!(
            cells[5],
            format!("{:.1}%", best * 100.0),
            "{variant}: {cells:?}"
        );
        assert_eq!(cells[7], best_epoch.to_string(), "{variant}");
        assert_eq!(
            cells[8],
            format!("{:.1}%", last["train_acc"].as_f64().unwrap() * 100.0),
            "{variant}"
        );
        assert_eq!(
            cells[9],
            format!("{:.1}%", last["val_acc"].as_f64().unwrap() * 100.0),
            "{variant}"
        );
        assert_eq!(cells[2], "ok", "{variant}: learned, did not diverge");
    }
    assert_eq!(row(&md, "optimizer.momentum=0.9")[1], "0.9");
    assert!(
        md.contains("- **Raising `optimizer.momentum` from 0.0 to 0.9:**"),
        "{md}"
    );
    assert!(md.contains("- pipeline: `pipelines/mini.ron`"), "{md}");
    // Every sentence comes from a claim record, written beside the report with a copy of
    // each run's metrics (tests/claims.rs re-derives the committed reports' claims).
    let claims: serde_json::Value =
        serde_json::from_str(&p.read("reports/mini/claims.json")).unwrap();
    let comparisons = claims["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 2, "{claims}");
    for c in comparisons {
        for claim in c["claims"].as_array().unwrap() {
            if let Some(words) = claim["words"].as_str() {
                assert!(md.contains(words), "{words} not in {md}");
            }
        }
    }
    for r in claims["runs"].as_array().unwrap() {
        let copy = p.read(&format!("reports/mini/{}", r["metrics"].as_str().unwrap()));
        assert_eq!(
            copy.lines().count(),
            metrics(&p, r["variant"].as_str().unwrap()).len()
        );
    }
    for svg in [
        "val_accuracy.svg",
        "val_loss.svg",
        "fit_base.svg",
        "fit_optimizer.momentum_0.9.svg",
    ] {
        let text = p.read(&format!("reports/mini/{svg}"));
        assert!(
            text.starts_with("<svg") && text.contains("polyline") || text.contains("<path"),
            "{svg}"
        );
        assert!(md.contains(&format!("(mini/{svg})")), "{svg} is linked");
    }
    // A cosmetic edit of the report reruns the report only.
    p.ran();
    p.edit(
        "pipelines/mini.ron",
        "Mini momentum study",
        "Momentum, tiny",
    );
    assert_eq!(p.build(&["reports/mini.md"]), sorted(&["mini:report"]));
    assert!(p.read("reports/mini.md").starts_with("# Momentum, tiny"));
    // `clean -n` lists every file `clean` removes: the reports' index, which goes with the
    // last report it links, included.
    let files = |args: &[&str]| {
        let v: serde_json::Value = serde_json::from_str(&p.ok(args).stdout).unwrap();
        let mut f: Vec<String> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        f.sort();
        f
    };
    let would = files(&["clean", "--dry-run", "--json", "reports/mini.md"]);
    assert!(
        would.iter().any(|f| f.ends_with("reports/index.html")),
        "{would:?}"
    );
    assert_eq!(files(&["clean", "--json", "reports/mini.md"]), would);
    assert!(!p.path().join("reports/index.html").exists());
}

fn tensorboard_installed() -> bool {
    python_has("tensorboard", "PIPE_REQUIRE_TENSORBOARD")
}

/// Reads the study's TensorBoard files with the `tensorboard` package.
#[test]
fn tensorboard_reads_back_every_scalar() {
    if !tensorboard_installed() {
        return;
    }
    let p = study();
    p.ok(&["build", "reports/mini.md"]);
    for (variant, dir) in [
        ("base", "base"),
        ("optimizer.momentum=0.9", "optimizer.momentum_0.9"),
    ] {
        let script = format!(
            "import json\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
             ea = EventAccumulator({:?}); ea.Reload()\n\
             print(json.dumps({{t: [[s.step, s.value] for s in ea.Scalars(t)] for t in ea.Tags()['scalars']}}))",
            p.path().join("reports/mini/tensorboard").join(dir).to_string_lossy()
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = metrics(&p, variant);
        for (tag, field) in [
            ("train/epoch_loss", "train_loss"),
            ("train/epoch_accuracy", "train_acc"),
            ("validation/epoch_loss", "val_loss"),
            ("validation/epoch_accuracy", "val_acc"),
            ("epoch_learning_rate", "lr"),
        ] {
            let points = tb[tag]
                .as_array()
                .unwrap_or_else(|| panic!("{variant}: no {tag} in {tb}"));
            assert_eq!(points.len(), m.len(), "{variant} {tag}");
            for (pt, e) in points.iter().zip(&m) {
                assert_eq!(pt[0].as_u64(), e["epoch"].as_u64(), "{variant} {tag}");
                let (got, want) = (pt[1].as_f64().unwrap(), e[field].as_f64().unwrap());
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{variant} {tag}: {got} vs {want}"
                );
            }
        }
    }
}

/// The real TensorBoard server, asked what its HParams dashboard shows: the experiment's
/// hyperparameters and metrics, and one session group per variant with its values and the
/// final figures of its evaluation.
const HPARAMS_QUERY: &str = r#"
import json, sys, urllib.request
from tensorboard import program
tb = program.TensorBoard()
tb.configure(argv=[None, "--logdir", sys.argv[1], "--port", "0", "--host", "127.0.0.1",
                   "--load_fast", "false"])
url = tb.launch()
def post(route, body):
    req = urllib.request.Request(url + "data/plugin/hparams/" + route,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
    return json.load(urllib.request.urlopen(req))
experiment = post("experiment", {"experimentName": ""})
groups = post("session_groups", {"experimentName": "", "startIndex": 0, "sliceSize": 100,
    "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", "STATUS_UNKNOWN"]})
print(json.dumps({"experiment": experiment, "groups": groups}))
"#;

#[test]
fn tensorboard_hparams_dashboard_lists_and_compares_the_variants() {
    if !tensorboard_installed() {
        return;
    }
    let p = study();
    p.ok(&["build", "reports/mini.md"]);
    let out = std::process::Command::new("python3")
        .args(["-c", HPARAMS_QUERY])
        .arg(p.path().join("reports/mini/tensorboard"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let infos = &tb["experiment"]["hparamInfos"];
    assert_eq!(infos.as_array().unwrap().len(), 1, "{infos}");
    assert_eq!(infos[0]["name"], "optimizer.momentum");
    assert_eq!(infos[0]["type"], "DATA_TYPE_FLOAT64");
    assert_eq!(
        infos[0]["domainDiscrete"],
        serde_json::json!([0.0, 0.5, 0.9])
    );
    let tags: Vec<&str> = tb["experiment"]["metricInfos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"]["tag"].as_str().unwrap())
        .collect();
    assert!(tags.contains(&"final/test_accuracy"), "{tags:?}");
    assert!(tags.contains(&"validation/epoch_accuracy"), "{tags:?}");
    // Losses as metrics are the cross-entropy alone, named apart from the curves (whose
    // losses hold the penalty), and the penalty is its own metric.
    assert!(tags.contains(&"final/validation_cross_entropy"), "{tags:?}");
    assert!(tags.contains(&"final/weight_penalty"), "{tags:?}");
    assert!(!tags.contains(&"validation/epoch_loss"), "{tags:?}");

    let groups = tb["groups"]["sessionGroups"].as_array().unwrap();
    let mut names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["base", "optimizer.momentum=0.5", "optimizer.momentum=0.9"]
    );
    for g in groups {
        let variant = g["name"].as_str().unwrap();
        let momentum = g["hparams"]["optimizer.momentum"].as_f64().unwrap();
        let want = variant
            .strip_prefix("optimizer.momentum=")
            .map_or(0.0, |v| v.parse().unwrap());
        assert_eq!(momentum, want, "{variant}");
        let session = &g["sessions"][0];
        assert_eq!(session["status"], "STATUS_SUCCESS", "{variant}");
        let value = |tag: &str| {
            session["metricValues"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"]["tag"] == tag)
                .unwrap_or_else(|| panic!("{variant}: no {tag}"))["value"]
                .as_f64()
                .unwrap()
        };
        let stage = if variant == "base" {
            "mini:eval".to_string()
        } else {
            format!("mini:eval[{variant}]")
        };
        let eval: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(p.outputs(&stage).join("evaluation.json")).unwrap(),
        )
        .unwrap();
        let test_acc = eval["final"]["accuracy"].as_f64().unwrap();
        assert!(
            (value("final/test_accuracy") - test_acc).abs() < 1e-6,
            "{variant}"
        );
        let m = metrics(&p, variant);
        let last_val = m.last().unwrap()["val_acc"].as_f64().unwrap();
        assert!(
            (value("validation/epoch_accuracy") - last_val).abs() < 1e-6,
            "{variant}"
        );
        let last = m.last().unwrap();
        let cross_entropy =
            last["val_loss"].as_f64().unwrap() - last["val_penalty"].as_f64().unwrap_or(0.0);
        assert!(
            (value("final/validation_cross_entropy") - cross_entropy).abs() < 1e-5,
            "{variant}"
        );
    }
}

/// Checks HTML pages with html5lib's strict parser (the WHATWG parsing algorithm; any parse
/// error fails) and prints every `href` and `src` as JSON, per page.
const HTML_CHECK: &str = r#"
import json, sys, html5lib
out = {}
for path in sys.argv[1:]:
    doc = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(open(path, "rb"))
    out[path] = {
        "title": doc.find("head/title").text,
        "href": [a.get("href") for a in doc.iter("a")],
        "src": [i.get("src") for i in doc.iter("img")],
        "tables": len(list(doc.iter("table"))),
    }
print(json.dumps(out))
"#;

#[test]
fn each_report_is_one_self_contained_html_page_and_the_index_links_them() {
    if !python_has("html5lib", "PIPE_REQUIRE_HTML5LIB") {
        return;
    }
    let p = study();
    p.write(
        "pipelines/other.ron",
        r#"Pipeline(uses: ["mini.ron"], stages: [
            (name: "lr", extends: "train", set: {"epochs": 2}, vary: {"optimizer.lr": [0.1]}),
            (name: "eval", kind: "evaluate", inputs: ["lr", "data"]),
            (name: "report", kind: "report", inputs: ["eval"], target: "reports/more/lr.md", config: (title: "Rate <&> study")),
        ])"#,
    );
    p.ok(&["build"]);
    let pages = [
        "reports/mini.html",
        "reports/more/lr.html",
        "reports/index.html",
    ];
    let out = std::process::Command::new("python3")
        .args(["-c", HTML_CHECK])
        .args(pages.iter().map(|f| p.path().join(f)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let page = |f: &str| &parsed[p.path().join(f).to_string_lossy().as_ref()];
    assert_eq!(page("reports/more/lr.html")["title"], "Rate <&> study");
    for f in pages {
        let dir = p.path().join(f).parent().unwrap().to_path_buf();
        for src in page(f)["src"].as_array().unwrap() {
            let src = src.as_str().unwrap();
            assert!(
                src.starts_with("data:image/svg+xml;base64,"),
                "{f}: {}",
                &src[..40.min(src.len())]
            );
        }
        for href in page(f)["href"].as_array().unwrap() {
            let href = href.as_str().unwrap();
            assert!(
                dir.join(href).is_file(),
                "{f}: link {href} does not resolve"
            );
        }
    }
    let md = p.read("reports/mini.md");
    let images = md.matches("![").count();
    assert!(images >= 5, "{md}");
    assert_eq!(
        page("reports/mini.html")["src"].as_array().unwrap().len(),
        images
    );
    assert!(page("reports/mini.html")["tables"].as_u64().unwrap() >= 1);
    let mut links: Vec<&str> = page("reports/index.html")["href"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    links.sort();
    assert_eq!(links, ["mini.html", "more/lr.html"]);
    // The index row says what the report's table says.
    let index = p.read("reports/index.html");
    let headline: serde_json::Value =
        serde_json::from_str(&p.read("reports/mini/headline.json")).unwrap();
    let (base, best) = (&headline["base"], &headline["best"]);
    assert_eq!(base["label"], "base");
    let acc = col(&md, "best val acc");
    let table_cell = row(&md, "base")[acc].to_string();
    assert_eq!(base["best_val_acc"], table_cell.as_str());
    let best_cell = row(&md, best["label"].as_str().unwrap())[acc].to_string();
    assert_eq!(best["best_val_acc"], best_cell.as_str());
    assert!(
        index.contains(&format!(
            "<td>{table_cell}</td><td><code>{}</code>: {best_cell}</td>",
            best["label"].as_str().unwrap()
        )),
        "{index}"
    );

    // Cleaning one report drops it from the index; cleaning both removes the index.
    p.ok(&["clean", "reports/more/lr.md"]);
    assert!(!p.path().join("reports/more/lr.html").exists());
    let index = p.read("reports/index.html");
    assert!(
        index.contains("mini.html") && !index.contains("lr.html"),
        "{index}"
    );
    p.ok(&["clean"]);
    assert!(!p.path().join("reports/index.html").exists());
}

/// Removing a variant removes its files from the report folder and from TensorBoard's run
/// list at the next build; `pipe clean` removes every file the target's builds wrote.
#[test]
fn files_of_removed_variants_do_not_stay_behind() {
    let p = study();
    p.ok(&["build", "reports/mini.md"]);
    let gone = [
        "reports/mini/fit_optimizer.momentum_0.5.svg",
        "reports/mini/tensorboard/optimizer.momentum_0.5",
    ];
    for f in gone {
        assert!(p.path().join(f).exists(), "{f} was written");
    }
    p.edit("pipelines/mini.ron", "[0.5, 0.9]", "[0.9]");
    p.ok(&["build", "reports/mini.md"]);
    for f in gone {
        assert!(
            !p.path().join(f).exists(),
            "{f} was removed with its variant"
        );
    }
    assert!(p
        .path()
        .join("reports/mini/fit_optimizer.momentum_0.9.svg")
        .is_file());
    let runs: Vec<String> = std::fs::read_dir(p.path().join("reports/mini/tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        sorted(&runs.iter().map(String::as_str).collect::<Vec<_>>()),
        sorted(&[
            "base",
            "optimizer.momentum_0.9",
            "events.out.tfevents.1.pipe-hparams"
        ])
    );
    // A file the user put beside the report is not the build's to remove.
    p.write("reports/mini/notes.txt", "mine");
    p.ok(&["clean", "reports/mini.md"]);
    assert!(!p.path().join("reports/mini.md").exists());
    assert!(!p.path().join("reports/mini/tensorboard").exists());
    assert!(!p.path().join("reports/mini/val_accuracy.svg").exists());
    assert_eq!(p.read("reports/mini/notes.txt"), "mine");
}

/// `pipe show` lists every evaluated variant with the numbers its report states, in every
/// format, sorted and filtered; `diff` names the differing field and results; `outputs`
/// and `log` read a stage's entry; `status --exit-code` says whether anything would run.
#[test]
fn results_are_shown_compared_and_found_without_reading_the_cache_by_hand() {
    let p = study();
    let s = p.pipe(&["status", "--exit-code"]);
    assert_eq!(s.code, 1, "stale before the build: {s:?}");
    let r = p.pipe(&["show"]);
    assert!(
        r.stderr.contains("3 evaluated variant(s) not built yet"),
        "{r:?}"
    );
    p.ok(&["build", "reports/mini.md"]);
    p.ok(&["status", "--exit-code"]);
    let md = p.read("reports/mini.md");

    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&p.ok(&["show", "--format", "json"]).stdout).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        let variant = r["variant"].as_str().unwrap();
        let cells = row(&md, variant);
        assert_eq!(
            cells[5],
            format!("{:.1}%", r["best_val_acc"].as_f64().unwrap() * 100.0),
            "{variant}"
        );
        assert_eq!(cells[7], r["best_epoch"].to_string(), "{variant}");
        assert_eq!(r["study"], "mini");
        assert_eq!(r["family"], "linear");
        assert_eq!(r["stale"], false);
    }
    let csv = p
        .ok(&["show", "--format", "csv", "--sort", "test_acc"])
        .stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("study,variant,seed,family,best_val_acc"),
        "{csv}"
    );
    let col = lines[0].split(',').position(|c| c == "test_acc").unwrap();
    let accs: Vec<f64> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    assert_eq!(accs.len(), 3);
    assert!(
        accs.windows(2).all(|w| w[0] >= w[1]),
        "best first: {accs:?}"
    );
    let table = p.ok(&["show", "mini:train[optimizer.momentum=0.9]"]).stdout;
    assert_eq!(
        table.lines().count(),
        2,
        "the header and the one variant: {table}"
    );
    assert!(table.contains("optimizer.momentum=0.9"), "{table}");
    assert_eq!(
        p.pipe(&["show", "--family", "mlp"]).code,
        2,
        "no mlp results here"
    );
    assert!(p
        .ok(&["show", "--format", "md"])
        .stdout
        .starts_with("| study | variant |"));
    assert_eq!(p.pipe(&["show", "--sort", "nonsense"]).code, 2);

    let d = p
        .ok(&["diff", "mini:eval", "mini:train[optimizer.momentum=0.9]"])
        .stdout;
    assert!(d.contains("optimizer.momentum  0.0  0.9"), "{d}");
    assert!(d.contains("results:") && d.contains("at epoch"), "{d}");
    assert!(!d.contains("optimizer.lr"), "only what differs: {d}");
    let all = p
        .ok(&[
            "diff",
            "--all",
            "mini:eval",
            "mini:eval[optimizer.momentum=0.9]",
        ])
        .stdout;
    assert!(
        all.contains("best validation accuracy") && all.contains("status"),
        "{all}"
    );

    let outs = p.ok(&["outputs", "mini:train[base]"]).stdout;
    let model = outs
        .lines()
        .find(|l| l.starts_with("model.bin\t"))
        .expect("model.bin listed");
    let path = model.split('\t').nth(1).unwrap();
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(p.outputs("mini:train").join("model.bin")).unwrap()
    );
    let log = p.ok(&["log", "mini:train[base]"]).stdout;
    assert!(log.contains("epoch 6/6"), "{log}");
    assert_eq!(p.pipe(&["log", "mini:nothing"]).code, 2);
    // A filter that matches nothing there is is said, with what there is.
    let r = p.pipe(&["show", "--family", "gru"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("no result matches --family gru; families with results: "),
        "{r:?}"
    );
    assert_eq!(p.pipe(&["show", "--study", "nothing"]).code, 2);
    // JSON's name of a column sorts as the table's does.
    assert_eq!(
        p.ok(&["show", "--sort", "test_acc_final"]).stdout,
        p.ok(&["show", "--sort", "test_acc"]).stdout
    );
    // A stage with variants has no one log: the variants are listed, none is picked.
    let r = p.pipe(&["log", "mini:train"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("`mini:train` has ") && r.stderr.contains("variant(s): [base], ["),
        "{r:?}"
    );
}

/// A family of studies with seeds: `pipe show` names each row's study after its report (not
/// the file they share), `--by variant` gives each variant's seeds as the report does (mean ±
/// sd), the count of what is not built yet follows `--study`, and `diff` writes field paths
/// as `set` takes them (`model.cell`, not `model.Rnn.cell`).
#[test]
fn show_groups_seeds_by_variant_and_names_each_study() {
    let p = Project::new();
    learnable(&p.path().join("src-data"), 40, 50);
    p.write(
        "pipelines/common.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 40)),
            (name: "lin", kind: "train", inputs: ["data"],
             config: (model: Linear(), epochs: 3, batch_size: 16, optimizer: (lr: 0.01), seed: 42)),
            (name: "rnn", kind: "train", inputs: ["data"],
             config: (model: Rnn(cell: Lstm, hidden: 4), epochs: 1, seed: 42),
             vary: {"model.cell": [Gru], "initializer": [Normal(0.0, 0.05)]}),
        ])"#,
    );
    p.write(
        "pipelines/fam.ron",
        r#"Pipeline(uses: ["common.ron"], studies: [(
            extends: "lin", data: "data", target: "reports/fam/{name}.md", seeds: 2,
            each: [
                (name: "momentum", vary: {"optimizer.momentum": [0.9]}),
                (name: "lr", vary: {"optimizer.lr": [0.1]}),
            ],
        )])"#,
    );
    let r = p.pipe(&["show", "--study", "fam/momentum"]);
    assert!(
        r.stderr
            .contains("4 evaluated variant(s) of the selected studies not built yet"),
        "{r:?}"
    );
    p.ok(&["build", "reports/fam/momentum.md", "reports/fam/lr.md"]);
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&p.ok(&["show", "--format", "json"]).stdout).unwrap();
    assert_eq!(runs.len(), 8, "{runs:?}");
    let studies: std::collections::BTreeSet<&str> =
        runs.iter().map(|r| r["study"].as_str().unwrap()).collect();
    assert_eq!(
        studies.into_iter().collect::<Vec<_>>(),
        ["fam/lr", "fam/momentum"]
    );
    let groups: Vec<serde_json::Value> = serde_json::from_str(
        &p.ok(&[
            "show",
            "--by",
            "variant",
            "--format",
            "json",
            "--study",
            "fam/momentum",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(groups.len(), 2, "base and momentum 0.9: {groups:?}");
    for g in &groups {
        let variant = g["variant"].as_str().unwrap();
        let own: Vec<f64> = runs
            .iter()
            .filter(|r| {
                r["study"] == "fam/momentum"
                    && r["variant"]
                        .as_str()
                        .unwrap()
                        .starts_with(if variant == "base" { "seed" } else { variant })
                    || r["study"] == "fam/momentum" && variant == "base" && r["variant"] == "base"
            })
            .map(|r| r["best_val_acc"].as_f64().unwrap())
            .collect();
        assert_eq!(own.len(), 2, "{variant}: two seeds in {runs:?}");
        assert_eq!(g["seeds"], serde_json::json!([42, 43]), "{g}");
        let mean = (own[0] + own[1]) / 2.0;
        let sd = (own[0] - own[1]).abs() / 2f64.sqrt();
        assert!(
            (g["best_val_acc"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
            "{g}"
        );
        assert!(
            (g["best_val_acc"]["sd"].as_f64().unwrap() - sd).abs() < 1e-12,
            "{g}"
        );
        assert_eq!(g["best_val_acc"]["n"], 2);
    }
    let table = p
        .ok(&["show", "--by", "variant", "--study", "fam/momentum"])
        .stdout;
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains(" ± "), "{table}");
    let csv = p
        .ok(&[
            "show",
            "--by",
            "variant",
            "--format",
            "csv",
            "--sort",
            "best_val_acc:asc",
        ])
        .stdout;
    let means: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert_eq!(means.len(), 4, "{csv}");
    assert!(means.windows(2).all(|w| w[0] <= w[1]), "{csv}");

    let d = p
        .ok(&["diff", "common:rnn", "common:rnn[model.cell=Gru]"])
        .stdout;
    // Values as `set` takes them and the variant's label writes them: a unit variant bare.
    assert!(d.contains("model.cell  Lstm  Gru"), "{d}");
    assert!(!d.contains("Rnn."), "paths as `set` takes them: {d}");
    let d = p
        .ok(&[
            "diff",
            "common:rnn",
            "common:rnn[initializer=Normal(0.0,0.05)]",
        ])
        .stdout;
    assert!(
        d.contains("initializer  GlorotUniform  Normal(0.0, 0.05)"),
        "{d}"
    );
}

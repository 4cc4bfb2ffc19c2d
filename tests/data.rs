//! The CIFAR-10 data stages through the real binary: downloads from a loopback HTTP server
//! (full, resumed, bad checksum, 404, truncated archive, unreachable), local copies, and
//! normalize on synthetic, corrupt and (read-only) genuine data.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::Digest;
use pipe::dataset::{read_npy_u8, Dataset, IMAGE_BYTES, RECORD_BYTES, TEST_FILE, TRAIN_FILES};
use util::{sorted, Project};

/// Writes a synthetic CIFAR-10 binary folder: `per_file` records in each training batch,
/// `test` in the test batch; labels cycle 0..9, pixels are a function of (file, record).
fn synthetic(dir: &Path, per_file: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let files: Vec<&str> = TRAIN_FILES.iter().copied().chain([TEST_FILE]).collect();
    for (f, name) in files.iter().enumerate() {
        let n = if f == 5 { test } else { per_file };
        let mut bytes = Vec::with_capacity(n * RECORD_BYTES);
        for r in 0..n {
            bytes.push(((r + f) % 10) as u8);
            bytes.extend((0..IMAGE_BYTES).map(|p| ((p * 7 + r * 13 + f * 31) % 256) as u8));
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(dir.join("batches.meta.txt"), names).unwrap();
}

/// The official tarball layout: `cifar-10-batches-bin/…` plus a readme.
fn tarball(dir: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        tar.append_path_with_name(dir.join(&n), Path::new("cifar-10-batches-bin").join(&n))
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_cksum();
    tar.append_data(&mut h, "cifar-10-batches-bin/readme.html", &b"hello"[..])
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Clone, Copy)]
enum Mode {
    Serve,
    /// The first response announces the whole body but stops after this many bytes.
    DropFirstAt(usize),
    NotFound,
}

/// A loopback HTTP/1.1 server for one file. It answers a bounded number of connections
/// within a bounded time, then stops by itself.
struct Server {
    port: u16,
    /// The `Range` header of each request ("" when none).
    ranges: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(body: Vec<u8>, mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = ranges.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while served < 20 && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let _ = answer(stream, &body, mode, served == 0, &seen);
                        served += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { port, ranges }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cifar-10-binary.tar.gz", self.port)
    }
}

fn answer(
    mut s: TcpStream,
    body: &[u8],
    mode: Mode,
    first: bool,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut range = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = v.trim().to_string();
        }
    }
    seen.lock().unwrap().push(range.clone());
    let from: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    match mode {
        Mode::NotFound => write!(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
        )?,
        Mode::DropFirstAt(at) if first => {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            s.write_all(&body[..at])?;
        }
        _ if from > 0 => {
            write!(
                s,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - 1,
                body.len(),
                body.len() - from
            )?;
            s.write_all(&body[from..])?;
        }
        _ => {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            s.write_all(body)?;
        }
    }
    s.flush()?;
    let _ = s.shutdown(std::net::Shutdown::Both);
    // Drain anything left so the client sees a clean close.
    let _ = reader.read_to_end(&mut Vec::new());
    Ok(())
}

fn study(p: &Project, download: &str, normalize: &str) {
    p.write(
        "pipelines/data.ron",
        &format!(
            r#"Pipeline(stages: [
                (name: "cifar10", kind: "download", config: ({download})),
                (name: "data", kind: "normalize", inputs: ["cifar10"], config: ({normalize})),
            ])"#
        ),
    );
}

fn http_study(p: &Project, url: &str, md5: &str) {
    study(
        p,
        &format!(r#"url: "{url}", md5: "{md5}", retries: 2, backoff_ms: 10"#),
        "validation: 20",
    );
}

/// The normalized dataset of the last build.
fn dataset(p: &Project) -> Dataset {
    Dataset::load(&p.outputs("data:data")).unwrap()
}

#[test]
fn a_full_download_is_checked_extracted_and_normalized() {
    let p = Project::new();
    synthetic(&p.path().join("src-data"), 30, 25);
    let tgz = tarball(&p.path().join("src-data"));
    let server = Server::start(tgz.clone(), Mode::Serve);
    http_study(&p, &server.url(), &md5_hex(&tgz));
    assert_eq!(
        p.build(&["data:data"]),
        sorted(&["data:cifar10", "data:data"])
    );
    let d = dataset(&p);
    assert_eq!(
        d.meta.sizes,
        vec![
            ("train".into(), 130),
            ("validation".into(), 20),
            ("test".into(), 25)
        ]
    );
    assert_eq!(d.meta.classes[9], "truck");
    assert_eq!(
        server.ranges.lock().unwrap().as_slice(),
        &[String::new()],
        "one plain request"
    );
}

#[test]
fn a_dropped_download_resumes_with_a_range_request() {
    let p = Project::new();
    synthetic(&p.path().join("src-data"), 30, 25);
    let tgz = tarball(&p.path().join("src-data"));
    let half = tgz.len() / 2;
    let server = Server::start(tgz.clone(), Mode::DropFirstAt(half));
    http_study(&p, &server.url(), &md5_hex(&tgz));
    p.ok(&["build", "data:data"]);
    assert_eq!(
        server.ranges.lock().unwrap().as_slice(),
        &[String::new(), format!("bytes={half}-")]
    );
    assert_eq!(dataset(&p).test.len(), 25);
}

#[test]
fn a_checksum_mismatch_is_refused_and_the_file_deleted() {
    let p = Project::new();
    synthetic(&p.path().join("src-data"), 10, 10);
    let tgz = tarball(&p.path().join("src-data"));
    let server = Server::start(tgz, Mode::Serve);
    http_study(&p, &server.url(), &"0".repeat(32));
    let r = p.pipe(&["build", "data:data"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("checksum mismatch"), "{r:?}");
    assert!(
        r.stdout
            .contains("expected 00000000000000000000000000000000; the downloaded file was deleted"),
        "{r:?}"
    );
    let leftovers: Vec<_> = util::files_under(&p.path().join("cache/scratch"))
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_404_fails_at_once_naming_the_url() {
    let p = Project::new();
    let server = Server::start(Vec::new(), Mode::NotFound);
    http_study(&p, &server.url(), "");
    let r = p.pipe(&["build", "data:data"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("HTTP 404 Not Found for {}", server.url())),
        "{r:?}"
    );
    assert_eq!(
        server.ranges.lock().unwrap().len(),
        1,
        "a 404 is not retried"
    );
}

#[test]
fn a_truncated_archive_is_reported() {
    let p = Project::new();
    synthetic(&p.path().join("src-data"), 30, 25);
    let mut tgz = tarball(&p.path().join("src-data"));
    tgz.truncate(tgz.len() * 6 / 10);
    let server = Server::start(tgz.clone(), Mode::Serve);
    http_study(&p, &server.url(), &md5_hex(&tgz));
    let r = p.pipe(&["build", "data:data"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("the archive is truncated or corrupt"),
        "{r:?}"
    );
}

#[test]
fn an_unreachable_server_fails_with_the_way_to_a_local_copy() {
    let p = Project::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed once dropped
    http_study(
        &p,
        &format!("http://127.0.0.1:{port}/cifar-10-binary.tar.gz"),
        "",
    );
    let r = p.pipe(&["build", "data:data"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("(3 attempts). Offline?"), "{r:?}");
    assert!(r.stdout.contains("set PIPE_CIFAR10=/path/to/it"), "{r:?}");
}

/// A project with no data: one message that says what to set, exit 2, nothing skipped. Once
/// built, the local copy's content is what counts: the variable forgotten in a new shell
/// (the copy no longer where the stage says) leaves the cache fresh, not stale.
#[test]
fn no_data_is_one_message_with_the_two_ways_and_a_built_copy_stays_fresh_without_it() {
    let p = Project::new();
    study(&p, r#"source: Local("nowhere")"#, "validation: 5");
    let r = p.pipe(&["build", "data:data"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("data:cifar10: no CIFAR-10 at ")
            && r.stderr.contains("source: Local(\"nowhere\")")
            && r.stderr
                .contains("hint: set PIPE_CIFAR10=/path/to/cifar-10-batches-bin")
            && r.stderr.contains("`source: Url` downloads"),
        "{r:?}"
    );
    assert!(
        !r.stdout.contains("skipped") && !r.stderr.contains("skipped"),
        "{r:?}"
    );
    assert!(p.ran().is_empty());
    // Pointed at one by the variable: built.
    let src = p.path().join("src-data");
    synthetic(&src, 12, 10);
    let with = |args: &[&str]| {
        util::Run::from_output(p.cmd(args).env("PIPE_CIFAR10", &src).output().unwrap())
    };
    assert_eq!(with(&["build", "data:data"]).code, 0);
    assert_eq!(p.ran(), sorted(&["data:cifar10", "data:data"]));
    // A new shell without it: fresh, nothing to do.
    let status = p.ok(&["status", "--json"]).stdout;
    let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["state"], "fresh", "{row}");
    }
    p.ok(&["build", "data:data"]);
    assert!(p.ran().is_empty());
    // The variable pointing at another copy is a change; a wrong one is the message again.
    let other = p.path().join("other-data");
    synthetic(&other, 13, 10);
    let r = util::Run::from_output(
        p.cmd(&["build", "data:data"])
            .env("PIPE_CIFAR10", &other)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(p.ran(), sorted(&["data:cifar10", "data:data"]));
    let r = util::Run::from_output(
        p.cmd(&["build", "data:data"])
            .env("PIPE_CIFAR10", p.path().join("typo"))
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("hint: correct PIPE_CIFAR10"), "{r:?}");
}

#[test]
fn a_local_copy_and_a_download_of_the_same_bytes_share_downstream_entries() {
    let p = Project::new();
    let src = p.path().join("src-data");
    synthetic(&src, 30, 25);
    let tgz = tarball(&src);
    let server = Server::start(tgz.clone(), Mode::Serve);
    http_study(&p, &server.url(), &md5_hex(&tgz));
    // First from the local folder named by the environment variable…
    let r = util::Run::from_output(
        p.cmd(&["build", "data:data"])
            .env("PIPE_CIFAR10", &src)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(p.ran(), sorted(&["data:cifar10", "data:data"]));
    // …then downloaded: the download runs (another source), normalize is a cache hit.
    assert_eq!(p.build(&["data:data"]), sorted(&["data:cifar10"]));
    let out = p.ok(&["build", "--dry-run"]).stdout;
    assert!(
        out.contains("0 of 2 stages would run") || out.contains("nothing to build"),
        "{out}"
    );
    // Pointing at another local copy is a change the key sees.
    let other = p.path().join("other-data");
    synthetic(&other, 31, 25);
    let r = util::Run::from_output(
        p.cmd(&["explain", "data:cifar10"])
            .env("PIPE_CIFAR10", &other)
            .output()
            .unwrap(),
    );
    assert!(
        r.stdout
            .contains("external input changed: none → local_folder"),
        "{r:?}"
    );
}

#[test]
fn a_local_tarball_is_checked_and_extracted() {
    let p = Project::new();
    synthetic(&p.path().join("src-data"), 12, 10);
    let tgz = tarball(&p.path().join("src-data"));
    std::fs::write(p.path().join("cifar.tar.gz"), &tgz).unwrap();
    study(
        &p,
        &format!(r#"source: Local("cifar.tar.gz"), md5: "{}""#, md5_hex(&tgz)),
        "validation: 10",
    );
    p.ok(&["build", "data:data"]);
    assert_eq!(dataset(&p).train.len(), 50);
}

#[test]
fn normalize_splits_without_touching_the_test_set_and_is_byte_identical_across_runs() {
    let build = || {
        let p = Project::new();
        synthetic(&p.path().join("src-data"), 40, 30);
        study(
            &p,
            r#"source: Local("src-data")"#,
            "validation: 50, seed: 3, scaling: Standardize",
        );
        p.ok(&["build", "data:data"]);
        let d = dataset(&p);
        let bytes: Vec<Vec<u8>> = [
            "train_x.npy",
            "train_y.npy",
            "validation_x.npy",
            "test_x.npy",
            "meta.json",
        ]
        .iter()
        .map(|f| std::fs::read(p.outputs("data:data").join(f)).unwrap())
        .collect();
        (p, d, bytes)
    };
    let (p, d, bytes) = build();
    let (_, _, again) = build();
    assert!(
        bytes == again,
        "same config and input, byte-identical output"
    );
    assert_eq!(
        (d.train.len(), d.validation.len(), d.test.len()),
        (150, 50, 30)
    );
    // The test split is the test file, in order.
    let test_file = std::fs::read(p.path().join("src-data/test_batch.bin")).unwrap();
    for (i, rec) in test_file.chunks(RECORD_BYTES).enumerate() {
        assert_eq!((d.test.labels[i], d.test.image(i)), (rec[0], &rec[1..]));
    }
    // Train and validation partition the training files.
    let mut all: Vec<&[u8]> = (0..d.train.len())
        .map(|i| d.train.image(i))
        .chain((0..d.validation.len()).map(|i| d.validation.image(i)))
        .collect();
    all.sort();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for f in 1..=5 {
        let b = std::fs::read(p.path().join(format!("src-data/data_batch_{f}.bin"))).unwrap();
        expected.extend(b.chunks(RECORD_BYTES).map(|r| r[1..].to_vec()));
    }
    expected.sort();
    assert_eq!(
        all,
        expected.iter().map(|v| v.as_slice()).collect::<Vec<_>>()
    );
    assert_eq!(d.meta.scaling, "Standardize");
    assert!(
        d.meta.scale.iter().all(|s| *s > 0.0) && d.meta.shift.iter().all(|s| *s < 0.0),
        "{:?}",
        d.meta
    );
}

#[test]
fn a_training_subset_is_stratified_and_seeded() {
    let p = Project::new();
    synthetic(&p.path().join("src-data"), 40, 10);
    study(
        &p,
        r#"source: Local("src-data")"#,
        "validation: 0, train_subset: Some(50)",
    );
    p.ok(&["build", "data:data"]);
    let d = dataset(&p);
    assert_eq!(d.train.class_counts(), [5; 10]);
    assert_eq!(d.validation.len(), 0);
    let (shape, _) = read_npy_u8(&p.outputs("data:data").join("validation_x.npy")).unwrap();
    assert_eq!(shape, vec![0, 3, 32, 32]);
}

#[test]
fn corrupt_files_are_named_with_the_record() {
    let p = Project::new();
    let src = p.path().join("src-data");
    synthetic(&src, 10, 10);
    study(&p, r#"source: Local("src-data")"#, "validation: 5");
    let mut b = std::fs::read(src.join("data_batch_2.bin")).unwrap();
    b.extend_from_slice(&[1, 2, 3, 4, 5]);
    std::fs::write(src.join("data_batch_2.bin"), &b).unwrap();
    let r = p.pipe(&["build", "data:data"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "data_batch_2.bin: size {} is not a multiple of 3073",
            10 * RECORD_BYTES + 5
        )),
        "{r:?}"
    );

    synthetic(&src, 10, 10);
    let mut t = std::fs::read(src.join("test_batch.bin")).unwrap();
    t[7 * RECORD_BYTES] = 11;
    std::fs::write(src.join("test_batch.bin"), &t).unwrap();
    let r = p.pipe(&["build", "data:data"]);
    assert!(
        r.stdout.contains(&format!(
            "test_batch.bin: record 7 (byte offset {}) has label 11; labels are 0..9",
            7 * RECORD_BYTES
        )),
        "{r:?}"
    );

    std::fs::remove_file(src.join("data_batch_4.bin")).unwrap();
    let r = p.pipe(&["build", "data:data"]);
    assert!(
        r.stdout.contains("the data lacks data_batch_4.bin"),
        "{r:?}"
    );
}

#[test]
fn too_large_a_validation_split_names_the_field() {
    let p = Project::new();
    synthetic(&p.path().join("src-data"), 10, 10);
    study(&p, r#"source: Local("src-data")"#, "validation: 50");
    let r = p.pipe(&["build", "data:data"]);
    assert!(
        r.stdout
            .contains("validation: 50 images requested but the training files hold 50"),
        "{r:?}"
    );
}

#[test]
fn the_genuine_sample_normalizes_to_its_known_counts() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cifar-10-sample");
    if !sample.join("test_batch.bin").exists() {
        eprintln!("the genuine sample is not beside the checkout; checked only on synthetic data");
        return;
    }
    let p = Project::new();
    study(
        &p,
        &format!(r#"source: Local({:?})"#, sample.canonicalize().unwrap()),
        "validation: 0",
    );
    p.ok(&["build", "data:data"]);
    let d = dataset(&p);
    assert_eq!((d.train.len(), d.test.len()), (5170, 1017));
    assert_eq!(
        d.meta.classes,
        [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck"
        ]
    );
    assert!(
        d.train.class_counts().iter().all(|&c| c > 400),
        "roughly balanced: {:?}",
        d.train.class_counts()
    );
    assert!(
        d.test.class_counts().iter().all(|&c| c > 70),
        "{:?}",
        d.test.class_counts()
    );
    // The first training record is data_batch_1's first record.
    let first = std::fs::read(sample.join("data_batch_1.bin")).unwrap();
    assert_eq!(
        (d.train.labels[0], d.train.image(0)),
        (first[0], &first[1..RECORD_BYTES])
    );
}

#[test]
fn a_changed_or_added_file_in_a_local_copy_is_seen_after_a_noop_answer() {
    let p = Project::new();
    let src = p.path().join("src-data");
    synthetic(&src, 12, 10);
    std::fs::remove_file(src.join("batches.meta.txt")).unwrap();
    study(&p, r#"source: Local("src-data")"#, "validation: 10");
    assert_eq!(
        p.build(&["data:data"]),
        sorted(&["data:cifar10", "data:data"])
    );
    p.ok(&["status"]);
    let again = p.ok(&["status"]).stdout;
    assert!(
        again.contains("nothing changed since the last check"),
        "{again}"
    );
    // A byte of one file: same size, new content.
    let file = src.join(TRAIN_FILES[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let status = p.ok(&["status"]).stdout;
    assert!(status.contains("stale  data:cifar10"), "{status}");
    assert!(!status.contains("nothing changed"), "{status}");
    assert_eq!(
        p.build(&["data:data"]),
        sorted(&["data:cifar10", "data:data"])
    );
    p.ok(&["status"]);
    assert!(p.ok(&["status"]).stdout.contains("nothing changed"));
    // A file the copy lacked appears beside the others.
    std::fs::write(
        src.join("batches.meta.txt"),
        "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n",
    )
    .unwrap();
    let status = p.ok(&["status"]).stdout;
    assert!(status.contains("stale  data:cifar10"), "{status}");
}

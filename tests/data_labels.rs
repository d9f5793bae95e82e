//! Dataset readers on small hand-made layouts: native formats, and every label-file problem
//! giving a one-line error with the file and line.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use asna::data::{open_dataset, DatasetFormat, Direction};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "asna-test-labels-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn touch(root: &Path, rel: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b"x").unwrap();
}

/// A CSV-format dataset with images `ref/r{0,1}.png`, `dist/d{0..5}.png` and the given labels.
fn csv_root(name: &str, labels: &[u8]) -> PathBuf {
    let d = temp_dir(name);
    for r in 0..2 {
        touch(&d, &format!("ref/r{r}.png"));
    }
    for k in 0..6 {
        touch(&d, &format!("dist/d{k}.png"));
    }
    fs::write(d.join("labels.csv"), labels).unwrap();
    d
}

fn csv_err(name: &str, labels: &[u8]) -> String {
    let d = csv_root(name, labels);
    let e = open_dataset(DatasetFormat::Csv, &d, None, None)
        .expect_err("expected an error")
        .to_string();
    let _ = fs::remove_dir_all(&d);
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

const HEADER: &str = "dis_img_path,dis_type,ref_img_path,score\n";

fn csv_with(rows: &str) -> Vec<u8> {
    format!("{HEADER}{rows}").into_bytes()
}

#[test]
fn csv_bom_crlf_quotes_extra_columns_and_order() {
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(
        b"note,score,ref_img_path,dis_type,dis_img_path\r\n\
          x,1.5,ref/r0.png,JPEG,dist/d0.png\r\n\
          \"a, quoted note\",2.5,ref/r0.png,\"Blur, Gaussian\",\"dist/d,1.png\",extra,fields\r\n\
          \r\n\
          z, -3e-1 ,./ref/r1.png,AWGN,dist\\d2.png\r\n",
    );
    let d = csv_root("happy", &bytes);
    touch(&d, "dist/d,1.png");
    let ds = open_dataset(DatasetFormat::Csv, &d, None, None).unwrap();
    assert_eq!(ds.pairs.len(), 3);
    assert_eq!(ds.direction, Direction::HigherIsBetter);
    assert_eq!(ds.labels_file, d.join("labels.csv"));
    let p = &ds.pairs;
    assert_eq!(p[0].dist_path, d.join("dist/d0.png"));
    assert_eq!(p[0].ref_path, d.join("ref/r0.png"));
    assert_eq!(
        (p[0].score, p[0].dis_type.as_str(), p[0].line),
        (1.5, "JPEG", 2)
    );
    assert_eq!(p[1].dist_path, d.join("dist/d,1.png"));
    assert_eq!(
        (p[1].score, p[1].dis_type.as_str(), p[1].line),
        (2.5, "Blur, Gaussian", 3)
    );
    assert_eq!(p[2].dist_path, d.join("dist/d2.png")); // backslash read as a separator
    assert_eq!(p[2].ref_path, d.join("ref/r1.png"));
    assert_eq!((p[2].score, p[2].line), (-0.3, 5));
    assert_eq!(ds.num_references(), 2);
    let lower = open_dataset(DatasetFormat::Csv, &d, None, Some(Direction::LowerIsBetter)).unwrap();
    assert_eq!(lower.direction, Direction::LowerIsBetter);
    // An explicit labels file, and dis_type being optional.
    fs::write(
        d.join("other.csv"),
        "score,dis_img_path,ref_img_path\n4,dist/d3.png,ref/r1.png\n",
    )
    .unwrap();
    let o = open_dataset(DatasetFormat::Csv, &d, Some(&d.join("other.csv")), None).unwrap();
    assert_eq!((o.pairs.len(), o.pairs[0].dis_type.as_str()), (1, ""));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn csv_missing_columns_and_short_rows() {
    let e = csv_err(
        "nocol",
        b"dis_img_path,dis_type,ref_img_path,mos\ndist/d0.png,x,ref/r0.png,1\n",
    );
    assert!(e.contains("labels.csv:1: missing column \"score\""), "{e}");
    let e = csv_err("noref", b"dis_img_path,score\ndist/d0.png,1\n");
    assert!(
        e.contains("labels.csv:1: missing column \"ref_img_path\""),
        "{e}"
    );
    let e = csv_err(
        "short",
        &csv_with("dist/d0.png,x,ref/r0.png,1\ndist/d1.png,x,ref/r0.png\n"),
    );
    assert!(e.contains("labels.csv:3: missing score"), "{e}");
    let e = csv_err("empty", b"");
    assert!(
        e.contains("labels.csv") && e.contains("empty labels file"),
        "{e}"
    );
    let e = csv_err("bomonly", b"\xEF\xBB\xBF");
    assert!(e.contains("empty labels file"), "{e}");
    let e = csv_err("headeronly", HEADER.as_bytes());
    assert!(e.contains("labels.csv: no image pairs listed"), "{e}");
}

#[test]
fn csv_non_utf8_and_bad_scores() {
    let mut b = csv_with("dist/d0.png,x,ref/r0.png,1\n");
    b.extend_from_slice(b"dist/d1\xFF.png,x,ref/r0.png,1\n");
    let e = csv_err("utf8", &b);
    assert!(
        e.contains("labels.csv:3: field 1 is not valid UTF-8"),
        "{e}"
    );
    for (bad, what) in [
        ("abc", "is not a number"),
        ("", "is not a number"),
        ("NaN", "is not a finite number"),
        ("inf", "is not a finite number"),
        ("-infinity", "is not a finite number"),
    ] {
        let e = csv_err(
            "score",
            &csv_with(&format!(
                "dist/d0.png,x,ref/r0.png,1\ndist/d1.png,x,ref/r0.png,{bad}\n"
            )),
        );
        assert!(
            e.contains(&format!("labels.csv:3: score \"{bad}\" {what}")),
            "{e}"
        );
    }
    // Line numbers stay right with CRLF line ends, blank lines and a quoted field spanning lines.
    let e = csv_err(
        "crlf",
        b"dis_img_path,dis_type,ref_img_path,score\r\ndist/d0.png,\"two\r\nlines\",ref/r0.png,1\r\n\r\ndist/d1.png,x,ref/r0.png,bad\r\n",
    );
    assert!(e.contains("labels.csv:5: score \"bad\""), "{e}");
}

#[test]
fn csv_duplicates_and_paths_outside_root() {
    let e = csv_err(
        "dup",
        &csv_with("dist/d0.png,x,ref/r0.png,1\ndist/d1.png,x,ref/r0.png,2\n./dist/d0.png,x,ref/r1.png,3\n"),
    );
    assert!(
        e.contains("labels.csv:4: duplicate row") && e.contains("line 2") && e.contains("d0.png"),
        "{e}"
    );
    for (path, what) in [
        ("/etc/passwd", "absolute image path"),
        ("C:\\data\\x.png", "absolute image path"),
        ("../outside.png", "uses \"..\""),
        ("dist/../../outside.png", "uses \"..\""),
    ] {
        let e = csv_err(
            "escape",
            &csv_with(&format!(
                "dist/d0.png,x,ref/r0.png,1\n{path},x,ref/r0.png,1\n"
            )),
        );
        assert!(
            e.contains("labels.csv:3:") && e.contains(what) && e.contains("refused"),
            "{path}: {e}"
        );
        let e = csv_err(
            "escape_ref",
            &csv_with(&format!("dist/d0.png,x,{path},1\n")),
        );
        assert!(
            e.contains("labels.csv:2:") && e.contains(what),
            "{path}: {e}"
        );
    }
}

#[test]
fn missing_files_roots_and_labels() {
    let e = csv_err(
        "missing",
        &csv_with("dist/d0.png,x,ref/r0.png,1\ndist/gone.png,x,ref/r0.png,2\ndist/d1.png,x,ref/absent.png,3\n"),
    );
    assert!(
        e.contains("2 of 5 listed image files missing")
            && e.contains("dist/gone.png")
            && e.contains("labels.csv:3"),
        "{e}"
    );
    let d = temp_dir("nolabels");
    let e = open_dataset(DatasetFormat::Csv, &d, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels.csv: labels file not found"), "{e}");
    let e = open_dataset(DatasetFormat::Kadid, &d, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dmos.csv: labels file not found"), "{e}");
    let e = open_dataset(DatasetFormat::Csv, &d.join("nowhere"), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere") && e.contains("not found"), "{e}");
    let e = open_dataset(DatasetFormat::Csv, &d, Some(&d), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a directory"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn kadid_native_layout() {
    let d = temp_dir("kadid");
    for n in [
        "I01.png",
        "I02.png",
        "I01_01_01.png",
        "I01_25_05.png",
        "I02_10_03.png",
    ] {
        touch(&d, &format!("images/{n}"));
    }
    fs::write(
        d.join("dmos.csv"),
        "dist_img,ref_img,dmos,var\r\nI01_01_01.png,I01.png,4.57,0.3\r\n\"I01_25_05.png\",I01.png,1.2,0.5\r\ni02_10_03.PNG,I02.png,3.0,0.1\r\n",
    )
    .unwrap();
    let ds = open_dataset(DatasetFormat::Kadid, &d, None, None).unwrap();
    assert_eq!(ds.pairs.len(), 3);
    assert_eq!(ds.direction, Direction::HigherIsBetter);
    assert_eq!(ds.pairs[0].dist_path, d.join("images/I01_01_01.png"));
    assert_eq!(ds.pairs[0].ref_path, d.join("images/I01.png"));
    assert_eq!(ds.pairs[0].dis_type, "GBLUR");
    assert_eq!(ds.pairs[1].dis_type, "Contrast Dist.");
    assert_eq!(ds.pairs[2].dist_path, d.join("images/I02_10_03.png")); // matched ignoring case
    assert_eq!(ds.pairs[2].dis_type, "JPEG");
    fs::write(
        d.join("dmos.csv"),
        "dist_img,ref_img,var\nI01_01_01.png,I01.png,0.3\n",
    )
    .unwrap();
    let e = open_dataset(DatasetFormat::Kadid, &d, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dmos.csv:1: missing column \"dmos\""), "{e}");
    fs::write(
        d.join("dmos.csv"),
        "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.5\nI01_01_01.png,I01.png,4.5\n",
    )
    .unwrap();
    let e = open_dataset(DatasetFormat::Kadid, &d, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dmos.csv:3: duplicate row") && e.contains("line 2"),
        "{e}"
    );
    fs::write(
        d.join("dmos.csv"),
        "dist_img,ref_img,dmos,var\nI01_01_01.png,/abs/I01.png,4.5,1\n",
    )
    .unwrap();
    let e = open_dataset(DatasetFormat::Kadid, &d, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dmos.csv:2: absolute image path"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn tid_native_layout_with_case_differences() {
    let d = temp_dir("tid");
    // Reference names in upper case (TID2008 style), i25 in lower case; one distorted file upper case.
    for n in ["I01.BMP", "i25.bmp", "I02.BMP"] {
        touch(&d, &format!("reference_images/{n}"));
    }
    for n in [
        "i01_01_1.bmp",
        "i01_24_5.bmp",
        "I02_08_2.BMP",
        "i25_17_4.bmp",
    ] {
        touch(&d, &format!("distorted_images/{n}"));
    }
    let mut labels = vec![0xEF, 0xBB, 0xBF];
    labels.extend_from_slice(b"5.51429 i01_01_1.bmp\r\n  3.0\ti01_24_5.bmp  \r\n\r\n4.1 i02_08_2.bmp\r\n2.25 \"i25_17_4.bmp\"\r\n");
    fs::write(d.join("mos_with_names.txt"), &labels).unwrap();
    let ds = open_dataset(DatasetFormat::Tid2013, &d, None, None).unwrap();
    assert_eq!(ds.pairs.len(), 4);
    assert_eq!(ds.num_references(), 3);
    let p = &ds.pairs;
    assert_eq!((p[0].score, p[0].line), (5.51429, 1));
    assert_eq!(p[0].ref_path, d.join("reference_images/I01.BMP"));
    assert_eq!(p[0].dis_type, "AWGN");
    assert_eq!(p[1].dis_type, "Multiply_Dist.");
    assert_eq!(
        (p[2].line, p[2].dist_path.clone()),
        (4, d.join("distorted_images/I02_08_2.BMP"))
    );
    assert_eq!(p[2].ref_path, d.join("reference_images/I02.BMP"));
    assert_eq!(p[3].ref_path, d.join("reference_images/i25.bmp"));
    assert_eq!(p[3].dis_type, "Contrast_Dist.");
    // TID2008 knows 17 types only.
    let ds8 = open_dataset(DatasetFormat::Tid2008, &d, None, None).unwrap();
    assert_eq!(
        (
            ds8.pairs[1].dis_type.as_str(),
            ds8.pairs[3].dis_type.as_str()
        ),
        ("", "Contrast_Dist.")
    );

    let bad = |content: &[u8]| {
        fs::write(d.join("mos_with_names.txt"), content).unwrap();
        let e = open_dataset(DatasetFormat::Tid2013, &d, None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mos_with_names.txt") && !e.contains('\n'), "{e}");
        e
    };
    assert!(bad(b"5.1 i01_01_1.bmp\nfive i01_24_5.bmp\n")
        .contains("mos_with_names.txt:2: score \"five\" is not a number"));
    assert!(bad(b"5.1 i01_01_1.bmp\n4 i01_\xFF.bmp\n")
        .contains("mos_with_names.txt:2: line is not valid UTF-8"));
    assert!(bad(b"5.1 i01_01_1.bmp\n4.0\n").contains("mos_with_names.txt:2: missing image name"));
    assert!(bad(b"5.1 i01.bmp\n").contains("mos_with_names.txt:1: cannot tell the reference"));
    assert!(bad(b"5.1 i01_01_1.bmp\n5.2 I01_01_1.BMP\n")
        .contains("mos_with_names.txt:2: duplicate row"));
    assert!(bad(b"5.1 ../i01_01_1.bmp\n").contains("mos_with_names.txt:1: image path"));
    let e = bad(b"5.1 i01_01_1.bmp\n5.1 i07_01_1.bmp\n");
    assert!(
        e.contains("2 of 4 listed image files missing") && e.contains("mos_with_names.txt:2"),
        "{e}"
    );
    assert!(bad(b"\n\n").contains("no image pairs"));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn pipal_native_layouts() {
    let d = temp_dir("pipal");
    touch(&d, "Train_Ref/A0001.bmp");
    touch(&d, "Train_Ref/A0002.bmp");
    touch(&d, "Distortion_1/A0001_00_00.bmp");
    touch(&d, "Distortion_3/A0001_10_02.bmp");
    touch(&d, "Distortion_3/A0002_00_01.bmp");
    fs::create_dir_all(d.join("Train_Label")).unwrap();
    fs::write(
        d.join("Train_Label/A0001.txt"),
        "A0001_00_00.bmp,1520.0648\r\nA0001_10_02.bmp,1437.5\r\n",
    )
    .unwrap();
    fs::write(
        d.join("Train_Label/A0002.txt"),
        "\u{feff}A0002_00_01.bmp,1300,extra\n",
    )
    .unwrap();
    let ds = open_dataset(DatasetFormat::Pipal, &d, None, None).unwrap();
    assert_eq!(ds.pairs.len(), 3);
    assert_eq!(ds.labels_file, d.join("Train_Label"));
    assert_eq!(
        ds.pairs[1].dist_path,
        d.join("Distortion_3/A0001_10_02.bmp")
    );
    assert_eq!(ds.pairs[1].ref_path, d.join("Train_Ref/A0001.bmp"));
    assert_eq!((ds.pairs[2].score, ds.pairs[2].line), (1300.0, 1));
    assert_eq!(ds.direction, Direction::HigherIsBetter);
    // One label file given explicitly.
    let one = open_dataset(
        DatasetFormat::Pipal,
        &d,
        Some(&d.join("Train_Label/A0002.txt")),
        None,
    )
    .unwrap();
    assert_eq!(one.pairs.len(), 1);

    let bad = |file: &str, content: &str| {
        fs::write(d.join("Train_Label").join(file), content).unwrap();
        let e = open_dataset(DatasetFormat::Pipal, &d, None, None)
            .unwrap_err()
            .to_string();
        fs::write(d.join("Train_Label/A0002.txt"), "A0002_00_01.bmp,1300\n").unwrap();
        let _ = fs::remove_file(d.join("Train_Label/A0003.txt"));
        assert!(!e.contains('\n'), "{e}");
        e
    };
    let e = bad("A0002.txt", "A0002_00_01.bmp,1300\nA0002_00_02.bmp,n/a\n");
    assert!(
        e.contains("A0002.txt:2: score \"n/a\" is not a number"),
        "{e}"
    );
    let e = bad("A0003.txt", "A0001_00_00.bmp,1\n");
    assert!(
        e.contains("A0003.txt:1: duplicate row") && e.contains("A0001.txt:1"),
        "{e}"
    );
    let e = bad("A0002.txt", "A0002_00_01.bmp\n");
    assert!(e.contains("A0002.txt:1: missing score"), "{e}");
    let e = bad("A0003.txt", "A0003_00_00.bmp,1\n");
    assert!(
        e.contains("2 of 7 listed image files missing")
            && e.contains("A0003.bmp")
            && e.contains("A0003.txt:1"),
        "{e}"
    );

    // Single Train_Dis folder instead of Distortion_1..4.
    let d2 = temp_dir("pipal2");
    touch(&d2, "Train_Ref/A0001.bmp");
    touch(&d2, "Train_Dis/A0001_00_00.bmp");
    fs::create_dir_all(d2.join("Train_Label")).unwrap();
    fs::write(d2.join("Train_Label/A0001.txt"), "A0001_00_00.bmp,1\n").unwrap();
    let ds = open_dataset(DatasetFormat::Pipal, &d2, None, None).unwrap();
    assert_eq!(ds.pairs[0].dist_path, d2.join("Train_Dis/A0001_00_00.bmp"));
    fs::remove_dir_all(d2.join("Train_Dis")).unwrap();
    let e = open_dataset(DatasetFormat::Pipal, &d2, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no distorted-image folder"), "{e}");
    fs::remove_dir_all(d2.join("Train_Label")).unwrap();
    fs::create_dir_all(d2.join("Train_Label")).unwrap();
    let e = open_dataset(DatasetFormat::Pipal, &d2, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Train_Label: no .txt label files"), "{e}");
    let _ = fs::remove_dir_all(&d);
    let _ = fs::remove_dir_all(&d2);
}

#[test]
fn format_and_direction_names() {
    for name in DatasetFormat::all_names() {
        let f: DatasetFormat = name.parse().unwrap();
        assert_eq!(f.to_string(), *name);
    }
    assert_eq!(
        "KADID10k".parse::<DatasetFormat>().unwrap(),
        DatasetFormat::Kadid
    );
    assert_eq!(
        "kadid-10k".parse::<DatasetFormat>().unwrap(),
        DatasetFormat::Kadid
    );
    let e = "live".parse::<DatasetFormat>().unwrap_err().to_string();
    assert!(
        e.contains("live") && e.contains("pipal, kadid, tid2013, tid2008, csv"),
        "{e}"
    );
    assert_eq!(
        "lower".parse::<Direction>().unwrap(),
        Direction::LowerIsBetter
    );
    assert_eq!("higher".parse::<Direction>().unwrap().as_str(), "higher");
    assert!("sideways".parse::<Direction>().is_err());
}

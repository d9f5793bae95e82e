//! The embedded label table is TID2013's per-type, per-level mean MOS.

use asna::synth::{mos, mos_table};

#[test]
fn table_has_24_types_by_5_levels() {
    let t = mos_table();
    assert_eq!(t.len(), 120);
    for ty in 1..=24 {
        for l in 1..=5 {
            assert_eq!(
                t.iter()
                    .filter(|e| e.tid_type == ty && e.level == l)
                    .count(),
                1,
                "type {ty} level {l}"
            );
            assert!(mos(ty, l).is_some());
        }
    }
    assert_eq!(mos(0, 1), None);
    assert_eq!(mos(25, 1), None);
    assert_eq!(mos(1, 0), None);
    assert_eq!(mos(1, 6), None);
}

#[test]
fn spot_checks_against_tid2013() {
    for (ty, l, v) in [
        (1, 1, 5.6742),
        (1, 5, 3.7745),
        (8, 5, 2.4581),
        (10, 4, 3.3104),
        (15, 1, 3.2847),
        (17, 2, 6.4809),
        (17, 5, 3.4548),
        (22, 3, 4.5890),
        (24, 5, 0.9565),
    ] {
        assert_eq!(mos(ty, l), Some(v), "type {ty} level {l}");
    }
    let e = mos_table()
        .into_iter()
        .find(|e| e.tid_type == 16 && e.level == 1)
        .unwrap();
    assert_eq!(e.name, "mean shift (intensity shift)");
    assert_eq!(
        (e.mean_mos, e.min_mos, e.max_mos, e.n),
        (6.0769, 5.5676, 6.8205, 25)
    );
}

#[test]
fn table_equals_the_csv_file_row_by_row() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/tid2013_type_level_mos.csv"
    ))
    .unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "type,name,level,mean_mos,min_mos,max_mos,n"
    );
    let table = mos_table();
    let mut n = 0;
    for (line, e) in lines.filter(|l| !l.trim().is_empty()).zip(&table) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0].parse::<u32>().unwrap(), e.tid_type);
        assert_eq!(f[2].parse::<u32>().unwrap(), e.level);
        assert_eq!(f[3].parse::<f64>().unwrap(), e.mean_mos);
        assert_eq!(mos(e.tid_type, e.level), Some(f[3].parse::<f64>().unwrap()));
        n += 1;
    }
    assert_eq!(n, 120);
}

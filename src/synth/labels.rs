//! TID2013's mean opinion scores per distortion type and level, embedded in the binary.
//!
//! `data/tid2013_type_level_mos.csv` holds, for each of TID2013's 24 distortion types and 5
//! levels, the mean over the 25 reference images of the published MOS (0..9 scale, higher is
//! better), with its minimum, maximum and the number of images averaged.

use std::sync::OnceLock;

const TABLE_CSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/tid2013_type_level_mos.csv"
));

/// One row of the label table.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct MosEntry {
    #[serde(rename = "type")]
    pub tid_type: u32,
    pub name: String,
    pub level: u32,
    pub mean_mos: f64,
    pub min_mos: f64,
    pub max_mos: f64,
    pub n: u32,
}

fn parse_table() -> Vec<MosEntry> {
    let mut rd = csv::Reader::from_reader(TABLE_CSV.as_bytes());
    let rows: Vec<MosEntry> = rd
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("embedded data/tid2013_type_level_mos.csv is malformed");
    assert_eq!(
        rows.len(),
        24 * 5,
        "embedded TID2013 label table must have 24 types x 5 levels"
    );
    for t in 1..=24u32 {
        for l in 1..=5u32 {
            assert!(
                rows.iter()
                    .filter(|e| e.tid_type == t && e.level == l)
                    .count()
                    == 1,
                "embedded TID2013 label table: type {t} level {l} missing or duplicated"
            );
        }
    }
    rows
}

fn table() -> &'static [MosEntry] {
    static TABLE: OnceLock<Vec<MosEntry>> = OnceLock::new();
    TABLE.get_or_init(parse_table)
}

/// The whole table: 120 entries ordered by type, then level.
pub fn mos_table() -> Vec<MosEntry> {
    table().to_vec()
}

/// TID2013's mean MOS for a type (1..=24) and level (1..=5); None outside the table.
pub fn mos(tid_type: u32, level: u32) -> Option<f64> {
    table()
        .iter()
        .find(|e| e.tid_type == tid_type && e.level == level)
        .map(|e| e.mean_mos)
}

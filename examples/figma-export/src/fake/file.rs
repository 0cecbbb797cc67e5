//! The generated file: colors, icons (a component set among them), images
//! with awkward names, and the bytes the fake CDN serves for each render.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Rng;

/// A node of the generated file.
#[derive(Clone, Debug)]
pub struct FakeNode {
    /// Node id (`"12:34"`).
    pub id: String,
    /// Its (often awkward) name.
    pub name: String,
}

/// The generated file.
#[derive(Clone, Debug)]
pub struct FakeFile {
    /// Its `version`.
    pub version: String,
    /// Color swatches: node, style name, RGBA.
    pub colors: Vec<(FakeNode, String, [f64; 4])>,
    /// Icon components (variants included).
    pub icons: Vec<FakeNode>,
    /// Component sets: the set's node, and the ids of its variants (which
    /// are also in `icons`, named by their properties, as Figma names them).
    pub sets: Vec<(FakeNode, Vec<String>)>,
    /// Image frames.
    pub images: Vec<FakeNode>,
}

pub(super) const AWKWARD: &[&str] = &[
    "../../etc/passwd",
    "..",
    ".",
    "",
    "CON",
    "nul.txt",
    "Size=24, Style=Filled",
    "🔥 Fire / Hot",
    "with/trailing/",
    "/leading",
    "Ünïcødé Ärrow",
    "icons/Arrow Left",
    "Icons/arrow left",
    "tab\tand\nnewline",
    "back\\slash",
    "question?star*colon:",
];

impl FakeFile {
    /// A realistic file: 59 colors (a duplicate, a non-Latin and an emoji style name among them), 304 icons (three of them variants of a component set), 20 images, with awkward
    /// names mixed in.
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let groups = [
            "Brand", "Neutral", "Success", "Warning", "Danger", "Info", "Accent",
        ];
        let mut colors = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for shade in 1..=8 {
                let id = format!("1:{}", g * 10 + shade);
                let name = format!("{group}/{}00", shade);
                let rgba = [
                    (rng.unit() * 255.0).round() / 255.0,
                    (rng.unit() * 255.0).round() / 255.0,
                    (rng.unit() * 255.0).round() / 255.0,
                    if shade == 8 { 0.5 } else { 1.0 },
                ];
                colors.push((
                    FakeNode {
                        id,
                        name: name.clone(),
                    },
                    name,
                    rgba,
                ));
            }
        }
        // Style names that real files have: a duplicate, non-Latin, emoji.
        for (i, name) in ["Brand/100", "Текст/Основной", "🔥 Hot"]
            .into_iter()
            .enumerate()
        {
            let rgba = [0.2 * (i + 1) as f64, 0.4, 0.6, 1.0];
            colors.push((
                FakeNode {
                    id: format!("1:{}", 90 + i),
                    name: name.into(),
                },
                name.into(),
                rgba,
            ));
        }
        let sets = [
            "Navigation",
            "Actions",
            "Media",
            "Status",
            "Social",
            "Files",
        ];
        let words = [
            "Arrow", "Close", "Menu", "Play", "Pause", "Star", "Heart", "Check", "Plus", "Minus",
        ];
        let mut icons = Vec::new();
        for i in 0..300 {
            let name = if i % 19 == 0 {
                AWKWARD[(i / 19) % AWKWARD.len()].to_string()
            } else {
                let set = sets[(rng.next_u64() % sets.len() as u64) as usize];
                let word = words[(rng.next_u64() % words.len() as u64) as usize];
                format!("Icons/{set}/{word} {i}")
            };
            icons.push(FakeNode {
                id: format!("2:{i}"),
                name,
            });
        }
        // A component set: variants named by their properties only.
        let mut variants = Vec::new();
        for (i, variant) in [
            "Size=16, State=Default",
            "Size=16, State=Hover",
            "Size=24, State=Default",
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("4:{}", i + 1);
            icons.push(FakeNode {
                id: id.clone(),
                name: variant.into(),
            });
            variants.push(id);
        }
        let sets = vec![(
            FakeNode {
                id: "4:0".into(),
                name: "Button".into(),
            },
            variants,
        )];
        let mut long = "Very long name ".repeat(30);
        long.push_str("end");
        icons.push(FakeNode {
            id: "2:300".into(),
            name: long,
        });
        let images = (0..20)
            .map(|i| FakeNode {
                id: format!("3:{i}"),
                name: if i == 7 {
                    "Hero/Banner 7".into()
                } else if i == 8 {
                    "hero/banner 7".into()
                } else {
                    format!("Hero/Banner {i}")
                },
            })
            .collect();
        Self {
            version: format!("{}", 4_000_000_000u64 + seed % 1_000),
            colors,
            icons,
            sets,
            images,
        }
    }

    /// The `GET /v1/files/:key` body.
    pub fn document(&self) -> Value {
        let color_nodes: Vec<Value> = self
            .colors
            .iter()
            .enumerate()
            .map(|(i, (node, _, [r, g, b, a]))| {
                json!({
                    "id": node.id, "name": node.name, "type": "RECTANGLE",
                    "fills": [{"type": "SOLID", "blendMode": "NORMAL", "color": {"r": r, "g": g, "b": b, "a": 1.0}, "opacity": a}],
                    "styles": {"fill": format!("S:{i}")}
                })
            })
            .collect();
        let in_set = |id: &str| self.sets.iter().any(|(_, v)| v.iter().any(|x| x == id));
        let component =
            |n: &FakeNode| json!({"id": n.id, "name": n.name, "type": "COMPONENT", "children": []});
        let mut icon_nodes: Vec<Value> = self
            .icons
            .iter()
            .filter(|n| !in_set(&n.id))
            .map(component)
            .collect();
        for (set, variants) in &self.sets {
            let children: Vec<Value> = self
                .icons
                .iter()
                .filter(|n| variants.contains(&n.id))
                .map(component)
                .collect();
            icon_nodes.push(json!({"id": set.id, "name": set.name, "type": "COMPONENT_SET", "children": children}));
        }
        let image_nodes: Vec<Value> = self
            .images
            .iter()
            .map(|n| json!({"id": n.id, "name": n.name, "type": "FRAME", "children": []}))
            .collect();
        let styles: BTreeMap<String, Value> = self
            .colors
            .iter()
            .enumerate()
            .map(|(i, (_, name, _))| {
                (
                    format!("S:{i}"),
                    json!({"key": format!("k{i}"), "name": name, "description": "", "remote": false, "styleType": "FILL"}),
                )
            })
            .collect();
        let components: BTreeMap<String, Value> = self
            .icons
            .iter()
            .map(|n| {
                (
                    n.id.clone(),
                    json!({"key": format!("c{}", n.id), "name": n.name, "description": ""}),
                )
            })
            .collect();
        json!({
            "name": "Demo Design System",
            "role": "viewer",
            "lastModified": "2026-11-20T10:00:00Z",
            "editorType": "figma",
            "version": self.version,
            "schemaVersion": 0,
            "document": {"id": "0:0", "name": "Document", "type": "DOCUMENT", "children": [
                {"id": "0:1", "name": "Colors", "type": "CANVAS", "children": color_nodes},
                {"id": "0:2", "name": "Icons", "type": "CANVAS", "children": icon_nodes},
                {"id": "0:3", "name": "Images", "type": "CANVAS", "children": image_nodes},
                // Documentation: components and frames that are neither
                // icons nor images by default.
                {"id": "0:4", "name": "Docs", "type": "CANVAS", "children": [
                    {"id": "5:1", "name": "Usage card", "type": "COMPONENT", "children": []},
                    {"id": "5:2", "name": "Examples", "type": "FRAME", "children": [
                        {"id": "5:3", "name": "Example button", "type": "COMPONENT", "children": []},
                    ]},
                ]},
            ]},
            "components": components,
            "styles": styles,
        })
    }
}

/// The bytes the fake CDN serves for a render: deterministic, with the
/// right magic bytes for the format.
pub fn render(id: &str, format: &str, scale: &str) -> Vec<u8> {
    match format {
        "svg" => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" data-node=\"{id}\" viewBox=\"0 0 24 24\"><path d=\"M0 0h24v24H0z\"/></svg>\n"
        )
        .into_bytes(),
        "pdf" => format!("%PDF-1.4\n% node {id}\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n").into_bytes(),
        _ => {
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.extend_from_slice(format!("node {id} at {scale}x").as_bytes());
            png.extend(std::iter::repeat_n(0xA5, 64));
            png
        }
    }
}

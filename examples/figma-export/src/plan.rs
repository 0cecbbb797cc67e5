//! From the file to the plan: the items and their paths, the folders, the
//! color files, the checkpoint's configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use steadfast_checkpoint::{config_hash, Config};

use crate::error::{write_failure, ExportError};
use crate::export::{Format, Item, Options};
use crate::figma::{node_order, FileInfo};
use crate::names::Names;
use crate::progress::Progress;
use crate::tokens::{color_files, Color};

/// Every file to render and download, with safe, unique paths; warns about
/// each name collision it resolved.
pub(crate) fn plan_items(file: &FileInfo, options: &Options, progress: &Progress) -> Vec<Item> {
    let icon_names = Names::plan(
        file.icons
            .iter()
            .map(|(id, name)| (id.as_str(), name.as_str())),
    );
    let image_names = Names::plan(
        file.images
            .iter()
            .map(|(id, name)| (id.as_str(), name.as_str())),
    );
    let mut items: Vec<Item> = Vec::new();
    for format in [Format::Svg, Format::Pdf] {
        if options.formats.contains(&format) {
            for (id, _) in &file.icons {
                let path =
                    Path::new("icons").join(icon_names.path(id, &format!(".{}", format.name())));
                items.push(Item {
                    node: id.clone(),
                    format,
                    scale: 1,
                    path,
                });
            }
        }
    }
    if options.formats.contains(&Format::Png) {
        for scale in &options.scales {
            for (id, _) in &file.images {
                let suffix = if *scale == 1 {
                    ".png".to_string()
                } else {
                    format!("@{scale}x.png")
                };
                let path = Path::new("images").join(image_names.path(id, &suffix));
                items.push(Item {
                    node: id.clone(),
                    format: Format::Png,
                    scale: *scale,
                    path,
                });
            }
        }
    }
    for (name, id, path) in icon_names.collisions.iter().chain(&image_names.collisions) {
        progress.println(format!(
            "  ! {name:?} ({id}) collides with another name; written as {}",
            path.display()
        ));
        tracing::warn!(name, id, path = %path.display(), "name collision");
    }
    items
}

/// The checkpoint's configuration: its hash covers everything that changes
/// the output.
pub(crate) fn checkpoint_config(options: &Options, version: &str) -> Result<Config, ExportError> {
    let hash = config_hash(&serde_json::json!({
        "file": options.file_key,
        "version": version,
        "formats": options.formats,
        "scales": options.scales,
        "naming": 2,
        "icons_page": options.filters.icons_page.to_string(),
        "icons_frame": options.filters.icons_frame.to_string(),
        "images_page": options.filters.images_page.to_string(),
    }))
    .map_err(|e| ExportError::fatal(format!("✗ {e}")))?;
    let config = Config::new(&options.out, &options.file_key, hash)
        .tool("figma-export", env!("CARGO_PKG_VERSION"));
    Ok(config)
}

/// Creates every folder the items need, and removes the temp files an
/// earlier, killed run left in them.
pub(crate) fn prepare_folders(
    items: &[Item],
    out: &Path,
    progress: &Progress,
) -> Result<(), ExportError> {
    let mut folders: Vec<PathBuf> = items
        .iter()
        .filter_map(|item| item.path.parent().map(|p| out.join(p)))
        .collect();
    folders.sort();
    folders.dedup();
    folders.push(out.to_path_buf());
    let mut orphans = 0;
    for folder in folders {
        std::fs::create_dir_all(&folder).map_err(|e| {
            ExportError::fatal(format!(
                "✗ cannot create {}: {e}; check --out",
                folder.display()
            ))
        })?;
        // Temp files of an earlier run that was killed mid-write.
        if let Ok(report) = steadfast_atomicfs::cleanup_orphans(&folder) {
            orphans += report.removed.len();
        }
    }
    if orphans > 0 {
        progress.println(format!(
            "  removed {orphans} temp files left by an interrupted run"
        ));
    }

    Ok(())
}

/// Writes `colors.json` and `colors.css` atomically, warning about every
/// name that had to change.
pub(crate) fn write_colors(
    colors: &BTreeMap<String, Color>,
    options: &Options,
    progress: &Progress,
) -> Result<(), ExportError> {
    // By name, then by node: a stable order, duplicates kept.
    let mut palette: Vec<(&String, &Color)> = colors.iter().collect();
    palette
        .sort_by(|(a_id, a), (b_id, b)| a.name.cmp(&b.name).then_with(|| node_order(a_id, b_id)));
    let palette: Vec<Color> = palette.into_iter().map(|(_, c)| c.clone()).collect();
    let files = color_files(&palette, options.tokens_format);
    for warning in &files.warnings {
        progress.println(format!("  ! {warning}"));
    }
    let (json, css) = (files.json, files.css);
    for (name, bytes) in [("colors.json", json), ("colors.css", css)] {
        steadfast_atomicfs::write(options.out.join(name), bytes).map_err(|e| write_failure(&e))?;
    }

    Ok(())
}

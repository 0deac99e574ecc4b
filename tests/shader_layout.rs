//! Every kernel's uniform parameter struct in WGSL (the `@group(0) @binding(0)` uniform) against
//! its `#[repr(C)]` mirror in `src/backend/gpu/`: the same members in the same order at the same
//! offsets, and the same size. naga parses each kernel as the launcher compiles it (its file
//! with the shared parts appended), so no GPU is needed.

use consistency::backend::gpu::{uniform_layouts, UniformLayout};
use naga::{AddressSpace, TypeInner};

/// (name, offset) of each member of the WGSL uniform at group 0, binding 0, and the struct's size.
fn wgsl_uniform(layout: &UniformLayout) -> (Vec<(String, usize)>, usize) {
    let name = layout.kernel.name;
    let source = layout.kernel.sources.concat();
    let module =
        naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
    let uniform = module
        .global_variables
        .iter()
        .map(|(_, g)| g)
        .find(|g| {
            g.space == AddressSpace::Uniform && g.binding.as_ref().is_some_and(|b| b.group == 0 && b.binding == 0)
        })
        .unwrap_or_else(|| panic!("{name}: no uniform at @group(0) @binding(0)"));
    let TypeInner::Struct { members, span } = &module.types[uniform.ty].inner else {
        panic!("{name}: the uniform is not a struct");
    };
    let members = members.iter().map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize)).collect();
    (members, *span as usize)
}

#[test]
fn every_parameter_struct_matches_its_wgsl_uniform() {
    let layouts = uniform_layouts();
    let mut wrong = Vec::new();
    for layout in &layouts {
        let (members, size) = wgsl_uniform(layout);
        let rust: Vec<(String, usize)> = layout.fields.iter().map(|&(n, o)| (n.to_string(), o)).collect();
        if members != rust || size != layout.size {
            wrong.push(format!(
                "{}: WGSL {members:?} ({size} bytes), Rust {rust:?} ({} bytes)",
                layout.kernel.name, layout.size
            ));
        }
    }
    assert!(wrong.is_empty(), "parameter structs that differ from their shader:\n{}", wrong.join("\n"));
}

#[test]
fn every_shader_file_is_checked() {
    // A kernel left out of the list would be the one file whose text no listed kernel holds
    // (the shared parts are checked with the kernels they are appended to).
    let layouts = uniform_layouts();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if !layouts.iter().any(|l| l.kernel.sources.contains(&text.as_str())) {
            missing.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(missing.is_empty(), "shader files in no checked kernel: {missing:?}");
}

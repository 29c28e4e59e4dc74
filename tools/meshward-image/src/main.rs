//! The `meshward-image` command: `build` writes a filter's image layout, `push` sends one to a
//! registry; both print the manifest digest a WasmPlugin pins.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meshward_image::reference::Reference;
use meshward_image::{build_layout, layout, registry, Error, Format, Result};

const USAGE: &str = "usage:
  meshward-image build <module.wasm> <out-dir> [--format compat|oci] [--root-id <id>]
  meshward-image push <layout-dir> <registry>/<repository>:<tag> [--plain-http]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(message)) => {
            eprintln!("meshward-image: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("meshward-image: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let (command, rest) = args
        .split_first()
        .ok_or_else(|| Error::Usage("expected a command".to_string()))?;
    let parsed = Args::parse(rest)?;
    match command.as_str() {
        "build" => build(parsed),
        "push" => push(parsed),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Error::Usage(format!("unknown command {other:?}"))),
    }
}

/// Positional arguments and flags, in any order.
struct Args {
    positional: Vec<String>,
    format: Option<String>,
    root_id: Option<String>,
    plain_http: bool,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args> {
        let mut parsed = Args {
            positional: Vec::new(),
            format: None,
            root_id: None,
            plain_http: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| Error::Usage(format!("{flag} needs a value")))
            };
            match arg.as_str() {
                "--format" => parsed.format = Some(value("--format")?),
                "--root-id" => parsed.root_id = Some(value("--root-id")?),
                "--plain-http" => parsed.plain_http = true,
                flag if flag.starts_with("--") => {
                    return Err(Error::Usage(format!("unknown option {flag}")))
                }
                _ => parsed.positional.push(arg.clone()),
            }
        }
        Ok(parsed)
    }

    fn two(&self, what: &str) -> Result<(&str, &str)> {
        match self.positional.as_slice() {
            [first, second] => Ok((first, second)),
            _ => Err(Error::Usage(format!("expected {what}"))),
        }
    }
}

fn build(args: Args) -> Result<()> {
    let (wasm, out) = args.two("<module.wasm> <out-dir>")?;
    let format: Format = args.format.as_deref().unwrap_or("compat").parse()?;
    let wasm = PathBuf::from(wasm);
    let root_id = match &args.root_id {
        Some(id) => id.clone(),
        None => stem(&wasm)?,
    };
    let built = build_layout(&wasm, Path::new(out), format, &root_id)?;
    let format_name = match format {
        Format::Compat => "compat",
        Format::Oci => "oci",
    };
    println!("{out}: {format_name} image of {}", wasm.display());
    println!("manifest sha256:{}", built.manifest_hex);
    println!("wasm     sha256:{}", built.wasm_hex);
    Ok(())
}

fn push(args: Args) -> Result<()> {
    let (dir, reference) = args.two("<layout-dir> <registry>/<repository>:<tag>")?;
    let reference: Reference = reference.parse()?;
    let image = layout::read(Path::new(dir))?;
    let pushed = registry::push(&image, &reference, args.plain_http)?;
    let hex = pushed
        .manifest_digest
        .strip_prefix("sha256:")
        .unwrap_or(&pushed.manifest_digest);
    println!(
        "pushed {reference} ({} blobs uploaded, {} already there)",
        pushed.uploaded, pushed.skipped
    );
    println!("manifest {}", pushed.manifest_digest);
    println!("pin it:  url: oci://{reference}  sha256: {hex}");
    Ok(())
}

fn stem(path: &Path) -> Result<String> {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{}: cannot name a root id from this path; pass --root-id",
                path.display()
            ))
        })
}

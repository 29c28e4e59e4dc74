//! Pushing an image over the OCI distribution API: each blob by a monolithic upload (POST,
//! then PUT with the digest) unless the registry already has it, then the manifest by tag.

use std::time::Duration;

use ureq::http::Response;
use ureq::Body;

use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::reference::Reference;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest digest the registry answered with, `sha256:<hex>`; equal to the local one.
    pub manifest_digest: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

/// Pushes `image` to `reference`. Loopback registries, and any with `plain_http`, are spoken
/// to over plain HTTP; others need HTTPS and a login, which this tool does not do.
pub fn push(image: &Image, reference: &Reference, plain_http: bool) -> Result<Pushed> {
    if !(plain_http || reference.is_loopback()) {
        return Err(Error::Reference {
            reference: reference.to_string(),
            reason: "pushing to a remote registry needs HTTPS and a login, which meshward-image \
                     does not do: pass --plain-http for a plain-HTTP registry, or push the layout \
                     with `crane push <dir> <reference>` or `skopeo copy oci:<dir> docker://<reference>`"
                .to_string(),
        });
    }
    let client = Client::new(format!(
        "http://{}/v2/{}",
        reference.registry, reference.repository
    ));
    let mut pushed = Pushed {
        manifest_digest: String::new(),
        uploaded: 0,
        skipped: 0,
    };
    for blob in &image.blobs {
        if client.has_blob(blob)? {
            pushed.skipped += 1;
        } else {
            client.upload_blob(blob)?;
            pushed.uploaded += 1;
        }
    }
    pushed.manifest_digest = client.put_manifest(image, &reference.tag)?;
    Ok(pushed)
}

struct Client {
    agent: ureq::Agent,
    origin: String,
    repository_url: String,
}

impl Client {
    fn new(repository_url: String) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let origin = repository_url
            .split("/v2/")
            .next()
            .unwrap_or_default()
            .to_string();
        Client {
            agent,
            origin,
            repository_url,
        }
    }

    fn has_blob(&self, blob: &Blob) -> Result<bool> {
        let url = format!("{}/blobs/{}", self.repository_url, blob.digest());
        let response = self
            .agent
            .head(&url)
            .call()
            .map_err(transport("HEAD", &url))?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(refused("HEAD", &url, response)),
        }
    }

    fn upload_blob(&self, blob: &Blob) -> Result<()> {
        let url = format!("{}/blobs/uploads/", self.repository_url);
        let response = self
            .agent
            .post(&url)
            .send_empty()
            .map_err(transport("POST", &url))?;
        if response.status().as_u16() != 202 {
            return Err(refused("POST", &url, response));
        }
        let Some(location) = header(&response, "location") else {
            return Err(Error::Registry {
                method: "POST",
                url,
                reason: "202 without a Location header".to_string(),
            });
        };
        let location = if location.starts_with('/') {
            format!("{}{location}", self.origin)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", blob.digest());
        let response = self
            .agent
            .put(&url)
            .header("content-type", "application/octet-stream")
            .send(&blob.bytes[..])
            .map_err(transport("PUT", &url))?;
        if response.status().as_u16() != 201 {
            return Err(refused("PUT", &url, response));
        }
        Ok(())
    }

    fn put_manifest(&self, image: &Image, tag: &str) -> Result<String> {
        let url = format!("{}/manifests/{tag}", self.repository_url);
        let response = self
            .agent
            .put(&url)
            .header("content-type", &image.manifest_media_type)
            .send(&image.manifest.bytes[..])
            .map_err(transport("PUT", &url))?;
        if response.status().as_u16() != 201 {
            return Err(refused("PUT", &url, response));
        }
        let expected = image.manifest.digest();
        match header(&response, "docker-content-digest") {
            Some(digest) if digest == expected => Ok(digest),
            Some(digest) => Err(Error::Registry {
                method: "PUT",
                url,
                reason: format!(
                    "the registry stored the manifest as {digest}, not {expected}; it may have rewritten it"
                ),
            }),
            // The header is optional in the distribution spec; the registry stored these bytes.
            None => Ok(expected),
        }
    }
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn transport(method: &'static str, url: &str) -> impl FnOnce(ureq::Error) -> Error {
    let url = url.to_string();
    move |error| Error::Registry {
        method,
        url,
        reason: error.to_string(),
    }
}

fn refused(method: &'static str, url: &str, response: Response<Body>) -> Error {
    let status = response.status();
    // The body only explains the refusal; a body that cannot be read leaves the status alone.
    let body = response.into_body().read_to_string().unwrap_or_default();
    Error::Registry {
        method,
        url: url.to_string(),
        reason: format!("answered {status}: {}", body.trim()),
    }
}

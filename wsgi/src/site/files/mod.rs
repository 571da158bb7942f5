//! Static files, as a dedicated file server serves them: GET and HEAD; the content type by
//! extension; strong validators and conditional requests (RFC 9110 §8.8, §13); ranges,
//! one or several (§14); precompressed siblings (`app.js.br`, `.zst`, `.gz`) chosen by
//! Accept-Encoding; `index.html` for a directory, after a redirect that adds the trailing
//! slash; listings when asked for; and nothing outside the directory, ever.
//!
//! The event loop never waits for the disk: finding, opening and reading a file are first
//! tried on the event loop in ways that fail rather than wait (`openat2` with
//! `RESOLVE_CACHED`, `preadv2` with `RWF_NOWAIT`: see `open`), which succeed for files
//! the kernel has cached, and otherwise run on tokio's blocking pool.

mod cache;
mod open;
mod path;
mod ranges;
mod representation;
mod validators;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use self::open::Root;
use self::path::Resolved;
use self::ranges::Ranges;
use self::validators::{Precondition, Validators};
use crate::body::{ResponseBody, plain};
use crate::file_body::{FileBody, Part, Planned, Wait, read_at};

/// Files up to this size are read in the same step that opens them, when the request
/// wants the whole file.
const SMALL: u64 = 256 * 1024;

/// How a directory of files is served.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FilesOptions {
    /// The names tried, in order, for a request naming a directory (twist web's
    /// `--index`). Default: `index.html`.
    pub index: Vec<String>,
    /// Whether a directory without an index gets an HTML listing of its entries (else
    /// 404). Default: false.
    pub listing: bool,
    /// `Cache-Control: max-age` for every file response, when set. Default: none.
    pub max_age: Option<Duration>,
    /// Whether names starting with `.` are served (and listed). Default: false, so that
    /// `.git/` or `.env` left in the directory are not.
    pub dotfiles: bool,
    /// Content types by extension (lower case, without the dot) that add to or replace
    /// `mime_guess`'s table; the key `""` is the type of files whose extension is unknown
    /// (Twisted's `File.defaultType`, set by twist web's `--mime-type`), else
    /// `application/octet-stream`.
    pub mime_types: HashMap<String, String>,
    /// Whether precompressed siblings (`F.br`, `F.zst`, `F.gz`) are served for `F` to
    /// clients that accept the coding. Default: true.
    pub precompressed: bool,
    /// Extensions tried, in order, for a name that does not exist: with `.html`, a
    /// request for `/page` is served `page.html` (twist web's `--ignore-ext`); `*` tries
    /// every file named `page.<anything>`, the first by name (its `--allow-ignore-ext`).
    /// Default: none.
    pub ignore_ext: Vec<String>,
}

impl Default for FilesOptions {
    fn default() -> FilesOptions {
        FilesOptions {
            index: vec!["index.html".to_owned()],
            listing: false,
            max_age: None,
            dotfiles: false,
            mime_types: HashMap::new(),
            precompressed: true,
            ignore_ext: Vec::new(),
        }
    }
}

/// Why a directory cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve files from {path}: {reason}")]
pub struct FilesError {
    /// The directory as given.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// A directory of static files, mounted on a [`Site`](super::Site).
#[derive(Debug)]
pub struct Files {
    root: Root,
    options: FilesOptions,
    /// Small files' bytes, kept while current.
    contents: cache::Contents,
}

impl Files {
    /// Serves the directory `root` with `options`.
    ///
    /// # Errors
    /// [`FilesError`] if `root` does not exist, cannot be read, or is not a directory:
    /// found at start-up rather than as a 404 on every request.
    pub fn new(root: impl Into<PathBuf>, options: FilesOptions) -> Result<Files, FilesError> {
        let given = root.into();
        let failed = |reason: String| FilesError {
            path: given.clone(),
            reason,
        };
        let root = std::fs::canonicalize(&given).map_err(|err| failed(err.to_string()))?;
        let meta = std::fs::metadata(&root).map_err(|err| failed(err.to_string()))?;
        if !meta.is_dir() {
            return Err(failed("not a directory".into()));
        }
        std::fs::read_dir(&root).map_err(|err| failed(err.to_string()))?;
        let root = Root::new(root).map_err(|err| failed(err.to_string()))?;
        Ok(Files {
            root,
            options,
            contents: cache::Contents::default(),
        })
    }

    /// The directory served, with symbolic links resolved.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Answers `request`, whose percent-decoded path after the mount prefix is `rest`.
    pub(crate) async fn serve<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        rest: &[u8],
    ) -> Response<ResponseBody> {
        let method = request.method();
        if *method != Method::GET && *method != Method::HEAD {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed: static files answer GET and HEAD.\n",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let Some(resolved) = path::resolve(request.uri().path(), rest, self.options.dotfiles)
        else {
            return not_found();
        };
        let headers = request.headers();
        let codings = if self.options.precompressed {
            representation::acceptable(
                headers
                    .get(header::ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok()),
            )
        } else {
            Vec::new()
        };
        // Read a small file in the same hop when the whole of it is what will be sent.
        let whole = *method == Method::GET
            && !headers.contains_key(header::RANGE)
            && !headers.contains_key(header::IF_NONE_MATCH)
            && !headers.contains_key(header::IF_MODIFIED_SINCE);
        // On the event loop if nothing has to wait for the disk, else on the blocking pool.
        let found = match self.find(&resolved, &codings, whole, Wait::Never) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let files = self.clone();
                tokio::task::spawn_blocking(move || {
                    files.find(&resolved, &codings, whole, Wait::Allowed)
                })
                .await
                .unwrap_or_else(|err| Err(io::Error::other(err)))
            }
            found => found,
        };
        let found = match found {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(path = request.uri().path(), "cannot serve a file: {err}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
            }
        };
        match found {
            Found::Nothing => not_found(),
            Found::Directory => redirect_to_directory(request),
            Found::Listing(html) => {
                let mut response = Response::new(ResponseBody::full(Bytes::from(html)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            Found::File(opened) => self.respond(request, opened),
        }
    }

    /// Everything that touches the file system for one request; with [`Wait::Never`],
    /// [`io::ErrorKind::WouldBlock`] as soon as a step might wait for the disk.
    fn find(
        &self,
        resolved: &Resolved,
        codings: &[&'static str],
        whole: bool,
        wait: Wait,
    ) -> io::Result<Found> {
        let mut relative = resolved.relative.clone();
        let mut file = self.root.open(&relative, wait)?;
        if file.is_none() && !resolved.as_directory {
            (relative, file) = self.with_ignored_extension(&relative, wait)?;
        }
        let Some(mut file) = file else {
            return Ok(Found::Nothing);
        };
        // fstat of an open file: the inode is in memory, nothing waits.
        let mut meta = file.metadata()?;
        if meta.is_dir() {
            if !resolved.as_directory {
                return Ok(Found::Directory);
            }
            let mut index = None;
            for name in &self.options.index {
                let candidate = relative.join(name);
                if let Some(found) = self.root.open(&candidate, wait)? {
                    let found_meta = found.metadata()?;
                    if found_meta.is_file() {
                        index = Some((candidate, found, found_meta));
                        break;
                    }
                }
            }
            match index {
                Some(found) => (relative, file, meta) = found,
                None if self.options.listing => {
                    if wait == Wait::Never {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    return Ok(Found::Listing(self.listing(&file, &relative)?));
                }
                None => return Ok(Found::Nothing),
            }
        } else if resolved.as_directory || !meta.is_file() {
            return Ok(Found::Nothing);
        }
        // A precompressed sibling the client accepts, best first.
        let mut coding = None;
        for accepted in codings {
            let mut sibling = relative.clone().into_os_string();
            sibling.push(".");
            sibling.push(representation::suffix(accepted));
            if let Some(found) = self.root.open(Path::new(&sibling), wait)? {
                let found_meta = found.metadata()?;
                if found_meta.is_file() {
                    (file, meta, coding) = (found, found_meta, Some(*accepted));
                    break;
                }
            }
        }
        let planned = Planned {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        let data = if whole && planned.len <= SMALL {
            match self.contents.get(&meta) {
                Some(kept) => Some(kept),
                None => {
                    let read = read_at(&file, planned.len as usize, 0, wait)?;
                    self.contents.put(&meta, &read);
                    Some(read)
                }
            }
        } else {
            None
        };
        Ok(Found::File(Opened {
            content_type: representation::content_type(&relative, &self.options.mime_types),
            file,
            planned,
            coding,
            has_variants: coding.is_some(),
            data,
        }))
    }

    /// `relative` with the first of [`FilesOptions::ignore_ext`] that names a file, and
    /// the file open; `(relative, None)` when none does.
    fn with_ignored_extension(
        &self,
        relative: &Path,
        wait: Wait,
    ) -> io::Result<(PathBuf, Option<File>)> {
        for extension in &self.options.ignore_ext {
            let candidates = if extension == "*" {
                // Reading the directory may wait for the disk.
                if wait == Wait::Never {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let (Some(parent), Some(stem)) = (relative.parent(), relative.file_name()) else {
                    continue;
                };
                let Some(directory) = self.root.open(parent, wait)? else {
                    continue;
                };
                let prefix = format!("{}.", stem.to_string_lossy());
                let mut names: Vec<String> = Root::names(&directory)?
                    .into_iter()
                    .filter(|(name, is_dir)| !is_dir && name.starts_with(&prefix))
                    .map(|(name, _)| name)
                    .collect();
                names.sort();
                names.into_iter().map(|name| parent.join(name)).collect()
            } else {
                let mut name = relative.as_os_str().to_owned();
                name.push(extension);
                vec![PathBuf::from(name)]
            };
            for candidate in candidates {
                if let Some(file) = self.root.open(&candidate, wait)? {
                    return Ok((candidate, Some(file)));
                }
            }
        }
        Ok((relative.to_owned(), None))
    }

    /// An HTML page listing the directory open as `directory`: names escaped,
    /// directories with a trailing slash, hidden names left out unless allowed.
    fn listing(&self, directory: &File, relative: &Path) -> io::Result<String> {
        let mut names: Vec<String> = Root::names(directory)?
            .into_iter()
            .filter(|(name, _)| self.options.dotfiles || !name.starts_with('.'))
            .map(|(name, is_dir)| if is_dir { format!("{name}/") } else { name })
            .collect();
        names.sort();
        let title = escape_html(&format!("/{}", relative.to_string_lossy()));
        let mut html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
        );
        for name in names {
            let href: String = percent_encoding::utf8_percent_encode(&name, HREF).collect();
            html.push_str(&format!(
                "<li><a href=\"{href}\">{}</a></li>\n",
                escape_html(&name)
            ));
        }
        html.push_str("</ul></body></html>\n");
        Ok(html)
    }

    /// The response for a found file: preconditions, then ranges, then the body.
    fn respond<B>(&self, request: &Request<B>, opened: Opened) -> Response<ResponseBody> {
        let headers = request.headers();
        let len = opened.planned.len;
        let validators = Validators::new(
            len,
            opened.planned.modified.unwrap_or(std::time::UNIX_EPOCH),
        );
        let mut response = Response::new(ResponseBody::empty());
        let fields = response.headers_mut();
        fields.insert(header::ETAG, value(&validators.etag));
        fields.insert(
            header::LAST_MODIFIED,
            value(&validators.last_modified_text()),
        );
        if let Some(max_age) = self.options.max_age {
            fields.insert(
                header::CACHE_CONTROL,
                value(&format!("max-age={}", max_age.as_secs())),
            );
        }
        if opened.has_variants {
            fields.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        match validators::evaluate(request.method(), headers, &validators) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                return response;
            }
            Precondition::Failed => {
                let mut failed = plain(
                    StatusCode::PRECONDITION_FAILED,
                    "Precondition Failed: the file does not match the request's conditions.\n",
                );
                failed.headers_mut().extend(response.headers_mut().drain());
                return failed;
            }
        }
        let fields = response.headers_mut();
        fields.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(coding) = opened.coding {
            fields.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        // Range handling is defined for GET alone (RFC 9110 §14.2).
        let range = headers
            .get(header::RANGE)
            .filter(|_| {
                *request.method() == Method::GET && validators::if_range_holds(headers, &validators)
            })
            .and_then(|v| v.to_str().ok());
        let selected = range.map_or(Ranges::Whole, |range| ranges::select(range, len));
        let content_type = value(&opened.content_type);
        let (status, parts) = match selected {
            Ranges::Whole => {
                fields.insert(header::CONTENT_TYPE, content_type);
                (StatusCode::OK, vec![Part::Range { start: 0, len }])
            }
            Ranges::One(range) => {
                fields.insert(header::CONTENT_TYPE, content_type);
                fields.insert(
                    header::CONTENT_RANGE,
                    value(&ranges::content_range(&range, len)),
                );
                let part = Part::Range {
                    start: *range.start(),
                    len: range.end() - range.start() + 1,
                };
                (StatusCode::PARTIAL_CONTENT, vec![part])
            }
            Ranges::Several(selected) => {
                let boundary = boundary();
                fields.insert(
                    header::CONTENT_TYPE,
                    value(&format!("multipart/byteranges; boundary={boundary}")),
                );
                let parts = ranges::multipart(&selected, len, &opened.content_type, &boundary);
                (StatusCode::PARTIAL_CONTENT, parts)
            }
            Ranges::Unsatisfiable => {
                let mut refused = plain(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "Range Not Satisfiable: no requested range is inside the file.\n",
                );
                let refused_fields = refused.headers_mut();
                refused_fields.insert(header::CONTENT_RANGE, value(&format!("bytes */{len}")));
                for name in [
                    header::ETAG,
                    header::LAST_MODIFIED,
                    header::VARY,
                    header::ACCEPT_RANGES,
                ] {
                    if let Some(v) = response.headers().get(&name) {
                        refused_fields.insert(name, v.clone());
                    }
                }
                return refused;
            }
        };
        *response.status_mut() = status;
        let body_len: u64 = parts.iter().map(Part::len).sum();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
        if *request.method() == Method::HEAD {
            return response;
        }
        *response.body_mut() = match (&opened.data, parts.as_slice()) {
            (Some(data), [Part::Range { start, len }]) => {
                ResponseBody::full(data.slice(*start as usize..(*start + *len) as usize))
            }
            _ => ResponseBody::file(FileBody::new(Arc::new(opened.file), opened.planned, parts)),
        };
        response
    }
}

/// What a lookup found.
enum Found {
    Nothing,
    /// A directory named without its trailing slash.
    Directory,
    Listing(String),
    File(Opened),
}

/// An open file and what the response needs to know of it.
struct Opened {
    file: File,
    planned: Planned,
    /// The type of the file asked for (not of a compressed sibling).
    content_type: String,
    /// The content coding of the sibling chosen, if one was.
    coding: Option<&'static str>,
    /// Whether the representation was chosen by Accept-Encoding (Vary).
    has_variants: bool,
    /// The whole file, when read in the lookup.
    data: Option<Bytes>,
}

fn not_found() -> Response<ResponseBody> {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

/// 301 to the same path with a trailing slash (and the same query), so that relative
/// links in the directory's index resolve inside it (nginx and Twisted do the same).
fn redirect_to_directory<B>(request: &Request<B>) -> Response<ResponseBody> {
    let uri = request.uri();
    let location = match uri.query() {
        Some(query) => format!("{}/?{query}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let mut response = plain(StatusCode::MOVED_PERMANENTLY, "Moved Permanently\n");
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A header value from text the server made (always visible ASCII).
fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A multipart boundary: 32 random hex digits, from the standard library's hasher keys.
fn boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let (mut a, mut b) = (state.build_hasher(), state.build_hasher());
    a.write_u8(1);
    b.write_u8(2);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// Characters percent-encoded in a listing's links: controls, space, and those with a
/// meaning in a URL or in HTML.
const HREF: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\'')
    .add(b'`')
    .add(b'&');

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

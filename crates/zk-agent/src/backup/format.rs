//! ZooKeeper's on-disk formats, read to verify a copy before it is trusted: a snapshot must
//! parse to its end and match its checksums (seals), a transaction log's records must match
//! their checksums and carry increasing zxids. Nothing here writes ZooKeeper's formats; a
//! restore writes the files back byte for byte (a log cut after a record stays a valid log).
//!
//! Layouts (ZooKeeper 3.5 to 3.9, jute binary archive, big-endian):
//! - snapshot: header (int magic "ZKSN", int version 2, long dbid), sessions (int count, then
//!   long id + int timeout each), the ACL cache (int count, then long id + vector of ACL(int
//!   perms, string scheme, string id)), the nodes (string path, buffer data, long acl, the
//!   persisted stat of 5 longs... ) until the path "/", a seal (long Adler32 of every byte so
//!   far, string "/"), then optionally the digest (long zxid, int version, long digest) and a
//!   seal, then optionally the last processed zxid (long) and a seal (3.9).
//! - transaction log: header (int magic "ZKLG", int version 2, long dbid), then records: long
//!   Adler32 of the entry, buffer entry (TxnHeader: long client, int cxid, long zxid, long time,
//!   int type; then the transaction), byte 'B'. A zero-length entry is the preallocated end.

use std::fmt;
use std::io::Read;

pub const SNAPSHOT_MAGIC: u32 = u32::from_be_bytes(*b"ZKSN");
pub const LOG_MAGIC: u32 = u32::from_be_bytes(*b"ZKLG");
const FORMAT_VERSION: u32 = 2;
const END_OF_RECORD: u8 = 0x42;
/// A bound on any one length field: no znode or ACL list comes near it, a corrupt length does.
const MAX_LENGTH: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub offset: usize,
    pub problem: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

impl std::error::Error for FormatError {}

pub fn epoch(zxid: u64) -> u64 {
    zxid >> 32
}

pub fn hex(zxid: u64) -> String {
    format!("0x{zxid:x}")
}

/// Reads jute's binary archive from any source (a file is read once, front to back, and never
/// held whole) and keeps ZooKeeper's running Adler32 of what was read.
struct Reader<R> {
    source: R,
    at: usize,
    adler: adler2::Adler32,
}

impl<R: Read> Reader<R> {
    fn new(source: R) -> Self {
        Reader {
            source,
            at: 0,
            adler: adler2::Adler32::new(),
        }
    }
    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, FormatError> {
        Err(FormatError {
            offset: self.at,
            problem: problem.into(),
        })
    }
    /// `n` bytes, or `None` when the source ends first. The buffer grows with what arrives, so a
    /// corrupt length in a short file allocates no more than the file holds.
    fn try_take(&mut self, n: usize) -> Result<Option<Vec<u8>>, FormatError> {
        let mut bytes = Vec::with_capacity(n.min(64 << 10));
        let read = (&mut self.source).take(n as u64).read_to_end(&mut bytes);
        self.adler.write_slice(&bytes);
        self.at += bytes.len();
        if let Err(e) = read {
            return self.fail(format!("reading: {e}"));
        }
        Ok((bytes.len() == n).then_some(bytes))
    }
    fn take(&mut self, n: usize) -> Result<Vec<u8>, FormatError> {
        match self.try_take(n)? {
            Some(bytes) => Ok(bytes),
            None => self.fail(format!("the file ends early (wanted {n} more bytes)")),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        match self.source.read_exact(&mut out) {
            Ok(()) => {
                self.adler.write_slice(&out);
                self.at += N;
                Ok(out)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.fail(format!("the file ends early (wanted {N} more bytes)"))
            }
            Err(e) => self.fail(format!("reading: {e}")),
        }
    }
    fn int(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn long(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn length(&mut self, what: &str) -> Result<Option<usize>, FormatError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        if n > MAX_LENGTH {
            return self.fail(format!("{what} length {n} is not plausible (corrupt)"));
        }
        Ok(Some(n))
    }
    fn buffer(&mut self, what: &str) -> Result<Option<Vec<u8>>, FormatError> {
        match self.length(what)? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }
    fn string(&mut self, what: &str) -> Result<Option<String>, FormatError> {
        let start = self.at;
        match self.buffer(what)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| FormatError {
                offset: start,
                problem: format!("{what} is not UTF-8"),
            }),
        }
    }
    fn header(&mut self, magic: u32, kind: &str) -> Result<i64, FormatError> {
        let found = self.int()? as u32;
        if found != magic {
            return self.fail(format!("not a ZooKeeper {kind} (magic {found:#x})"));
        }
        let version = self.int()? as u32;
        if version != FORMAT_VERSION {
            return self.fail(format!(
                "{kind} format version {version}, this agent reads version {FORMAT_VERSION}"
            ));
        }
        self.long()
    }
    /// ZooKeeper's seal: the Adler32 of every byte before it, then the string "/".
    fn seal(&mut self, what: &str) -> Result<(), FormatError> {
        let expected = self.adler.checksum();
        let found = self.long()?;
        let slash = self.string("seal")?;
        if found as u64 != expected as u64 || slash.as_deref() != Some("/") {
            return self.fail(format!("{what}: checksum mismatch (CRC corruption)"));
        }
        Ok(())
    }
    fn at_end(&mut self) -> Result<bool, FormatError> {
        let mut byte = [0u8; 1];
        loop {
            match self.source.read(&mut byte) {
                Ok(n) => return Ok(n == 0),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(format!("reading: {e}")),
            }
        }
    }
}

pub fn adler32(bytes: &[u8]) -> u32 {
    let mut hasher = adler2::Adler32::new();
    hasher.write_slice(bytes);
    hasher.checksum()
}

/// What a verified snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub nodes: u64,
    pub sessions: u64,
    /// The last zxid applied to the tree when the snapshot ended (3.9 writes it; older
    /// snapshots do not, and a snapshot is fuzzy: it may hold transactions after its name's zxid).
    pub last_processed_zxid: Option<u64>,
}

/// One node of a snapshot, for tests and for reading a backup's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: String,
    pub data: Vec<u8>,
    pub acl: Vec<Acl>,
    pub mzxid: u64,
    pub ephemeral_owner: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

/// Parses a whole snapshot and checks its seals; `visit` sees every node.
pub fn read_snapshot(bytes: &[u8], visit: impl FnMut(Node)) -> Result<SnapshotSummary, FormatError> {
    read_snapshot_from(bytes, visit)
}

/// The sections that may follow the data tree take well under this; more is not a snapshot.
const SNAPSHOT_TAIL_MAX: usize = 4096;

/// [`read_snapshot`] from a reader, read once front to back: only one node is in memory at a
/// time (wrap a file in a `BufReader`).
pub fn read_snapshot_from(source: impl Read, mut visit: impl FnMut(Node)) -> Result<SnapshotSummary, FormatError> {
    let mut r = Reader::new(source);
    r.header(SNAPSHOT_MAGIC, "snapshot")?;
    let sessions = r.int()?;
    if sessions < 0 {
        return r.fail("negative session count");
    }
    for _ in 0..sessions {
        r.long()?;
        r.int()?;
    }
    let acl_lists = r.int()?;
    if acl_lists < 0 {
        return r.fail("negative ACL count");
    }
    let mut acls = std::collections::HashMap::new();
    for _ in 0..acl_lists {
        let id = r.long()?;
        let count = r.length("ACL list")?.unwrap_or(0);
        let mut list = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let perms = r.int()?;
            let scheme = r.string("ACL scheme")?.unwrap_or_default();
            let id = r.string("ACL id")?.unwrap_or_default();
            list.push(Acl { perms, scheme, id });
        }
        acls.insert(id, list);
    }
    let mut nodes = 0u64;
    loop {
        let path = match r.string("path")? {
            Some(path) => path,
            None => return r.fail("a node without a path"),
        };
        if path == "/" {
            break;
        }
        if !path.is_empty() && !path.starts_with('/') {
            return r.fail(format!("node path {path:?} is not absolute"));
        }
        let data = r.buffer("node data")?.unwrap_or_default();
        let acl_ref = r.long()?;
        let _czxid = r.long()?;
        let mzxid = r.long()? as u64;
        let _ctime = r.long()?;
        let _mtime = r.long()?;
        let _version = r.int()?;
        let _cversion = r.int()?;
        let _aversion = r.int()?;
        let ephemeral_owner = r.long()?;
        let _pzxid = r.long()?;
        // -1 is ZooKeeper's "open ACL unsafe" shortcut, kept out of the cache.
        let acl = match acl_ref {
            -1 => vec![Acl {
                perms: 31,
                scheme: "world".into(),
                id: "anyone".into(),
            }],
            id => match acls.get(&id) {
                Some(list) => list.clone(),
                None => {
                    return r.fail(format!(
                        "node {path} names ACL list {id}, which the snapshot does not hold"
                    ))
                }
            },
        };
        nodes += 1;
        visit(Node {
            path,
            data,
            acl,
            mzxid,
            ephemeral_owner,
        });
    }
    r.seal("the data tree")?;
    // Two sealed sections may follow, each only when ZooKeeper is set to write it: the digest
    // (`digest.enabled`) and the last processed zxid. Which ones are there is told by their
    // seals: the one layout whose every checksum matches and that ends with the file. The few
    // bytes left are read once and each layout is tried on them.
    let mut tail = Vec::new();
    if let Err(e) = (&mut r.source)
        .take(SNAPSHOT_TAIL_MAX as u64 + 1)
        .read_to_end(&mut tail)
    {
        return r.fail(format!("reading: {e}"));
    }
    if tail.len() > SNAPSHOT_TAIL_MAX {
        return r.fail("bytes after the last seal");
    }
    let mut first_error = None;
    let mut last_processed_zxid = None;
    let mut read = false;
    for (digest, zxid) in [(true, true), (false, true), (true, false), (false, false)] {
        let mut attempt = Reader {
            source: &tail[..],
            at: r.at,
            adler: r.adler,
        };
        match snapshot_tail(&mut attempt, digest, zxid) {
            Ok(found) => {
                last_processed_zxid = found;
                read = true;
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if !read {
        return Err(first_error.expect("a layout was tried"));
    }
    Ok(SnapshotSummary {
        nodes,
        sessions: sessions as u64,
        last_processed_zxid,
    })
}

/// Reads the sections after a snapshot's data tree, as `digest` and `zxid` say they are there.
fn snapshot_tail(r: &mut Reader<&[u8]>, digest: bool, zxid: bool) -> Result<Option<u64>, FormatError> {
    if digest {
        // The digest: long zxid, int version, then a long (version 2+) or a hex string.
        r.long()?;
        let version = r.int()?;
        if version < 2 {
            r.string("digest")?;
        } else {
            r.long()?;
        }
        r.seal("the digest")?;
    }
    let mut last_processed_zxid = None;
    if zxid {
        last_processed_zxid = Some(r.long()? as u64);
        r.seal("the last processed zxid")?;
    }
    if !r.at_end()? {
        return r.fail("bytes after the last seal");
    }
    Ok(last_processed_zxid)
}

/// One verified record of a transaction log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord {
    pub zxid: u64,
    /// The offset just after the record: cutting the file there keeps a valid log.
    pub end: usize,
}

/// Reads a transaction log's records. A log's last record may be partial (ZooKeeper was writing
/// it, or the file is being read while it is written): reading stops at the last complete record.
/// A complete record whose checksum does not match is corruption and fails.
pub fn read_log(bytes: &[u8]) -> Result<Vec<LogRecord>, FormatError> {
    read_log_from(bytes)
}

/// [`read_log`] from a reader, one record in memory at a time.
pub fn read_log_from(source: impl Read) -> Result<Vec<LogRecord>, FormatError> {
    let mut r = Reader::new(source);
    r.header(LOG_MAGIC, "transaction log")?;
    let mut records = Vec::new();
    loop {
        let start = r.at;
        let Some(head) = r.try_take(12)? else { break };
        let crc = i64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(head[8..].try_into().expect("4 bytes"));
        if length <= 0 {
            // The preallocated zeros.
            break;
        }
        let length = length as usize;
        if length > MAX_LENGTH {
            return Err(FormatError {
                offset: start + 8,
                problem: format!("transaction length {length} is not plausible (corrupt)"),
            });
        }
        // A record still being written ends the log.
        let Some(mut entry) = r.try_take(length + 1)? else {
            break;
        };
        if entry.pop() != Some(END_OF_RECORD) {
            return Err(FormatError {
                offset: start,
                problem: "a record without its end marker".into(),
            });
        }
        if crc as u64 != adler32(&entry) as u64 {
            return Err(FormatError {
                offset: start,
                problem: "transaction checksum mismatch".into(),
            });
        }
        if entry.len() < 28 {
            return Err(FormatError {
                offset: start,
                problem: "a transaction shorter than its header".into(),
            });
        }
        let zxid = u64::from_be_bytes(entry[12..20].try_into().expect("8 bytes"));
        records.push(LogRecord { zxid, end: r.at });
    }
    Ok(records)
}

/// Checks that a sequence of zxids chains: within an epoch each follows the previous by one, a
/// new epoch only moves forward.
pub fn check_chain(zxids: impl IntoIterator<Item = u64>) -> Result<(), String> {
    let mut previous: Option<u64> = None;
    for zxid in zxids {
        if let Some(prev) = previous {
            let chained = if epoch(zxid) == epoch(prev) {
                zxid == prev + 1
            } else {
                epoch(zxid) > epoch(prev)
            };
            if !chained {
                return Err(format!(
                    "transaction {} follows {}: the logs have a gap",
                    hex(zxid),
                    hex(prev)
                ));
            }
        }
        previous = Some(zxid);
    }
    Ok(())
}

/// The zxid in a data file's name (`snapshot.<hex>`, `log.<hex>`).
pub fn zxid_of(name: &str, prefix: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    u64::from_str_radix(rest, 16).ok()
}

#[cfg(test)]
pub mod testing {
    //! Writers of the same layouts, only to build test inputs.
    use super::*;

    pub fn put_string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as i32).to_be_bytes());
        out.extend(s.as_bytes());
    }

    fn seal(out: &mut Vec<u8>) {
        let sum = adler32(out) as i64;
        out.extend(sum.to_be_bytes());
        put_string(out, "/");
    }

    /// A snapshot of `nodes` (path, data), all with ACL list 1 (world:anyone:cdrwa).
    pub fn snapshot(nodes: &[(&str, &[u8])], last_zxid: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(SNAPSHOT_MAGIC.to_be_bytes());
        out.extend(2i32.to_be_bytes());
        out.extend(0i64.to_be_bytes());
        out.extend(1i32.to_be_bytes()); // one session
        out.extend(0x1234i64.to_be_bytes());
        out.extend(30000i32.to_be_bytes());
        out.extend(1i32.to_be_bytes()); // one ACL list
        out.extend(1i64.to_be_bytes());
        out.extend(1i32.to_be_bytes());
        out.extend(31i32.to_be_bytes());
        put_string(&mut out, "world");
        put_string(&mut out, "anyone");
        for (path, data) in nodes {
            put_string(&mut out, path);
            out.extend((data.len() as i32).to_be_bytes());
            out.extend(*data);
            out.extend(1i64.to_be_bytes());
            for _ in 0..4 {
                out.extend(7i64.to_be_bytes());
            }
            for _ in 0..3 {
                out.extend(0i32.to_be_bytes());
            }
            out.extend(0i64.to_be_bytes());
            out.extend(7i64.to_be_bytes());
        }
        put_string(&mut out, "/");
        seal(&mut out);
        out.extend(5i64.to_be_bytes());
        out.extend(2i32.to_be_bytes());
        out.extend(99i64.to_be_bytes());
        seal(&mut out);
        if let Some(zxid) = last_zxid {
            out.extend((zxid as i64).to_be_bytes());
            seal(&mut out);
        }
        out
    }

    pub fn log(zxids: &[u64], preallocated: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(LOG_MAGIC.to_be_bytes());
        out.extend(2i32.to_be_bytes());
        out.extend(0i64.to_be_bytes());
        for &zxid in zxids {
            let mut entry = Vec::new();
            entry.extend(1i64.to_be_bytes());
            entry.extend(1i32.to_be_bytes());
            entry.extend((zxid as i64).to_be_bytes());
            entry.extend(0i64.to_be_bytes());
            entry.extend(1i32.to_be_bytes());
            entry.extend(b"txn");
            out.extend((adler32(&entry) as i64).to_be_bytes());
            out.extend((entry.len() as i32).to_be_bytes());
            out.extend(&entry);
            out.push(END_OF_RECORD);
        }
        out.extend(std::iter::repeat_n(0u8, preallocated));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn a_snapshot_parses_with_its_nodes_and_last_zxid() {
        let bytes = snapshot(&[("", b""), ("/foo", b"bar")], Some(0x100000005));
        let mut seen = Vec::new();
        let summary = read_snapshot(&bytes, |n| seen.push((n.path, n.data))).unwrap();
        assert_eq!(summary.nodes, 2);
        assert_eq!(summary.last_processed_zxid, Some(0x100000005));
        assert_eq!(seen[1], ("/foo".to_string(), b"bar".to_vec()));
        let older = snapshot(&[("", b"")], None);
        assert_eq!(read_snapshot(&older, |_| {}).unwrap().last_processed_zxid, None);
    }

    #[test]
    fn any_flipped_byte_or_cut_in_a_snapshot_is_refused() {
        let bytes = snapshot(&[("", b""), ("/foo", b"bar"), ("/foo/baz", b"qux")], Some(9));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(read_snapshot(&bad, |_| {}).is_err(), "flipped byte {i} passed");
        }
        // A cut right after the tree's or the digest's seal is an older format's valid end.
        let older_ends = [bytes.len() - 54, bytes.len() - 21];
        for cut in 0..bytes.len() {
            let passed = read_snapshot(&bytes[..cut], |_| {}).is_ok();
            assert_eq!(passed, older_ends.contains(&cut), "cut at {cut}");
        }
    }

    #[test]
    fn a_log_stops_at_its_preallocated_end_and_at_a_partial_record() {
        let bytes = log(&[0x100000001, 0x100000002, 0x100000003], 64);
        let records = read_log(&bytes).unwrap();
        assert_eq!(
            records.iter().map(|r| r.zxid).collect::<Vec<_>>(),
            [0x100000001, 0x100000002, 0x100000003]
        );
        let cut = &bytes[..records[2].end - 5];
        assert_eq!(read_log(cut).unwrap().len(), 2);
        assert_eq!(read_log(&bytes[..records[1].end]).unwrap().len(), 2);
    }

    #[test]
    fn a_flipped_byte_in_a_log_record_is_refused() {
        let bytes = log(&[1, 2, 3], 0);
        let records = read_log(&bytes).unwrap();
        for i in 16..records[2].end {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let read = read_log(&bad);
            // A flip in a length may turn the record into a partial one: never into a valid one.
            assert!(
                read.as_ref().map(|r| r.len() < 3).unwrap_or(true),
                "flipped byte {i} passed: {read:?}"
            );
        }
    }

    /// Hands out one byte per read, as a slow stream may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((byte, rest)), Some(out)) => {
                    *out = *byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn a_file_read_as_a_trickling_stream_reads_as_the_whole_file() {
        let bytes = snapshot(&[("", b""), ("/foo", b"bar"), ("/foo/baz", b"qux")], Some(9));
        for cut in [bytes.len(), bytes.len() - 54, bytes.len() - 21, bytes.len() - 3, 40] {
            let mut whole = Vec::new();
            let mut streamed = Vec::new();
            let from_slice = read_snapshot(&bytes[..cut], |n| whole.push(n));
            let from_stream = read_snapshot_from(Trickle(&bytes[..cut]), |n| streamed.push(n));
            assert_eq!(from_slice, from_stream, "cut at {cut}");
            assert_eq!(whole, streamed);
        }
        let mut longer = bytes.clone();
        longer.extend([0u8; SNAPSHOT_TAIL_MAX + 10]);
        assert!(read_snapshot_from(Trickle(&longer), |_| {}).is_err());
        let log = log(&[1, 2, 3], 64);
        for cut in [log.len(), log.len() - 64, log.len() - 70, 10] {
            assert_eq!(
                read_log(&log[..cut]),
                read_log_from(Trickle(&log[..cut])),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn chains_accept_a_new_epoch_and_refuse_gaps() {
        assert!(check_chain([0x100000001, 0x100000002, 0x200000001]).is_ok());
        assert!(check_chain([0x100000001, 0x100000003]).is_err());
        assert!(check_chain([0x200000001, 0x100000002]).is_err());
        assert_eq!(zxid_of("log.1a", "log"), Some(0x1a));
        assert_eq!(zxid_of("snapshot.x", "snapshot"), None);
    }
}

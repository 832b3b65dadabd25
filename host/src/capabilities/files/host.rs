//! `wasi:filesystem/types` as wasmtime-wasi implements it, with every refused path on the
//! record.
//!
//! wasmtime-wasi resolves each guest path inside its preopened directory through cap-std,
//! which refuses `..` past the root, absolute paths and symlinks that lead out; writes under a
//! read-only preopen (inputs, upstream files) are refused too. The guest sees `not-permitted`
//! (or `access`). This wrapper delegates every call unchanged and, when a call that names a
//! path is refused that way, publishes an audit record with the path and the reason.
//! Every write is charged to the attempt's disk quota first (see `disk`).
//! Linked over wasmtime-wasi's own definitions (the linker allows shadowing for this).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, ErrorCode, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

use super::disk::{DiskQuota, ENTRY_COST, QuotaStream};
use crate::bus::{SharedEmitter, lock};
use crate::model::events::{AuditResource, Decision};

pub(crate) struct AuditedFs<'a> {
    pub(crate) fs: WasiFilesystemCtxView<'a>,
    pub(crate) events: &'a SharedEmitter,
    pub(crate) disk: &'a Arc<DiskQuota>,
}

struct HasAuditedFs;

impl HasData for HasAuditedFs {
    type Data<'a> = AuditedFs<'a>;
}

/// Links the audited filesystem over wasmtime-wasi's (which must be linked already); `get`
/// gives a store's view of its filesystem, emitter and disk quota.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> AuditedFs<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = types::add_to_linker::<T, HasAuditedFs>(linker, get);
    linker.allow_shadowing(false);
    linked
}

/// Why cap-std (or a read-only preopen) refused `op` on `path`, in words.
fn reason(op: &str, path: &str, code: &ErrorCode) -> String {
    let how = if op == "symlink" {
        "a symlink may point only inside the sandbox, by a relative path"
    } else if path.starts_with('/') {
        "an absolute path: a guest sees only its sandbox"
    } else if path.split('/').any(|s| s == "..") {
        "the path climbs out of the sandbox with `..`"
    } else if matches!(code, ErrorCode::ReadOnly) {
        "the directory is read-only"
    } else {
        "the path leads out of the sandbox (through a symlink) or writes to a read-only directory"
    };
    let code = match code {
        ErrorCode::NotPermitted => "not-permitted",
        ErrorCode::Access => "access",
        _ => "read-only",
    };
    format!("{how} ({code})")
}

impl AuditedFs<'_> {
    /// Passes `result` on; records it when it refused `path`.
    fn audited<T>(&self, op: &str, path: &str, result: FsResult<T>) -> FsResult<T> {
        if let Err(e) = &result
            && let Some(code) = e.downcast_ref()
            && matches!(
                code,
                ErrorCode::NotPermitted | ErrorCode::Access | ErrorCode::ReadOnly
            )
        {
            lock(self.events).audit(
                AuditResource::File,
                &format!("{op} {path}"),
                Decision::Denied,
                &reason(op, path, code),
            );
        }
        result
    }
}

impl AuditedFs<'_> {
    /// Takes `bytes` of `what` from the disk quota, or refuses as a full disk would.
    fn charge(&self, op: &str, path: &str, bytes: u64) -> FsResult<()> {
        if self.disk.charge(bytes) {
            return Ok(());
        }
        let what = if path.is_empty() {
            op.to_owned()
        } else {
            format!("{op} {path}")
        };
        self.disk.refuse(self.events, &what, bytes);
        Err(ErrorCode::InsufficientSpace.into())
    }

    /// Wraps a new output stream onto a file so that its writes are charged too.
    fn charged(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let inner = self.fs.table.delete(stream)?;
        let wrapped: DynOutputStream = Box::new(QuotaStream::new(
            inner,
            Arc::clone(self.disk),
            Arc::clone(self.events),
        ));
        Ok(self.fs.table.push(wrapped)?)
    }
}

/// Another handle on the descriptor `fd`, for a look before the call that consumes `fd`.
fn borrow(fd: &Fd) -> Fd {
    Resource::new_borrow(fd.rep())
}

impl types::Host for AuditedFs<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        self.fs.convert_error_code(err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.fs.filesystem_error_code(err)
    }
}

type Fd = Resource<types::Descriptor>;

impl HostDescriptor for AuditedFs<'_> {
    async fn advise(
        &mut self,
        fd: Fd,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        self.fs.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Fd) -> FsResult<()> {
        self.fs.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Fd) -> FsResult<types::DescriptorFlags> {
        self.fs.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Fd) -> FsResult<types::DescriptorType> {
        self.fs.get_type(fd).await
    }

    async fn set_size(&mut self, fd: Fd, size: types::Filesize) -> FsResult<()> {
        // Growing a file counts as writing the bytes it grows by.
        let now = self.fs.stat(borrow(&fd)).await?.size;
        self.charge("set-size", "", size.saturating_sub(now))?;
        self.fs.set_size(fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Fd,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.fs.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Fd,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.fs.read(fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Fd,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        self.charge("write", "", buf.len() as u64)?;
        self.fs.write(fd, buf, offset).await
    }

    async fn read_directory(&mut self, fd: Fd) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.fs.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Fd) -> FsResult<()> {
        self.fs.sync(fd).await
    }

    async fn create_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        self.charge("create-directory", &path, ENTRY_COST)?;
        let result = self.fs.create_directory_at(fd, path.clone()).await;
        self.audited("create-directory", &path, result)
    }

    async fn stat(&mut self, fd: Fd) -> FsResult<types::DescriptorStat> {
        self.fs.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        let result = self.fs.stat_at(fd, path_flags, path.clone()).await;
        self.audited("stat", &path, result)
    }

    async fn set_times_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let result = self
            .fs
            .set_times_at(fd, path_flags, path.clone(), atim, mtim)
            .await;
        self.audited("set-times", &path, result)
    }

    async fn link_at(
        &mut self,
        fd: Fd,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Fd,
        new_path: String,
    ) -> FsResult<()> {
        self.charge("link", &new_path, ENTRY_COST)?;
        let result = self
            .fs
            .link_at(
                fd,
                old_path_flags,
                old_path.clone(),
                new_descriptor,
                new_path.clone(),
            )
            .await;
        self.audited("link", &format!("{old_path} -> {new_path}"), result)
    }

    async fn open_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Fd> {
        // A file that opening creates costs a block.
        if oflags.contains(types::OpenFlags::CREATE)
            && self
                .fs
                .stat_at(borrow(&fd), path_flags, path.clone())
                .await
                .is_err()
        {
            self.charge("create", &path, ENTRY_COST)?;
        }
        let result = self
            .fs
            .open_at(fd, path_flags, path.clone(), oflags, flags)
            .await;
        self.audited("open", &path, result)
    }

    fn drop(&mut self, fd: Fd) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.fs, fd)
    }

    async fn readlink_at(&mut self, fd: Fd, path: String) -> FsResult<String> {
        let result = self.fs.readlink_at(fd, path.clone()).await;
        self.audited("readlink", &path, result)
    }

    async fn remove_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let result = self.fs.remove_directory_at(fd, path.clone()).await;
        self.audited("remove-directory", &path, result)
    }

    async fn rename_at(
        &mut self,
        fd: Fd,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        let result = self
            .fs
            .rename_at(fd, old_path.clone(), new_fd, new_path.clone())
            .await;
        self.audited("rename", &format!("{old_path} -> {new_path}"), result)
    }

    async fn symlink_at(&mut self, fd: Fd, src_path: String, dest_path: String) -> FsResult<()> {
        self.charge("symlink", &dest_path, ENTRY_COST)?;
        let result = self
            .fs
            .symlink_at(fd, src_path.clone(), dest_path.clone())
            .await;
        self.audited("symlink", &format!("{dest_path} -> {src_path}"), result)
    }

    async fn unlink_file_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let result = self.fs.unlink_file_at(fd, path.clone()).await;
        self.audited("unlink", &path, result)
    }

    fn read_via_stream(
        &mut self,
        fd: Fd,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.fs.read_via_stream(fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Fd,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.fs.write_via_stream(fd, offset)?;
        self.charged(stream)
    }

    fn append_via_stream(&mut self, fd: Fd) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.fs.append_via_stream(fd)?;
        self.charged(stream)
    }

    async fn is_same_object(&mut self, a: Fd, b: Fd) -> wasmtime::Result<bool> {
        self.fs.is_same_object(a, b).await
    }

    async fn metadata_hash(&mut self, fd: Fd) -> FsResult<types::MetadataHashValue> {
        self.fs.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        let result = self.fs.metadata_hash_at(fd, path_flags, path.clone()).await;
        self.audited("stat", &path, result)
    }
}

impl HostDirectoryEntryStream for AuditedFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.fs.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}

package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

const basePrefix = "base/"

// BaseManifest describes a base backup stored in a repository as
// base/<id>/: the tar files pg_basebackup wrote (base.tar, pg_wal.tar,
// one per tablespace; .tar.gz when compressed) and its backup_manifest,
// each with its SHA-256. It is written last: a base backup without one is
// unfinished and never listed.
type BaseManifest struct {
	ID            string    `json:"id"`
	ServerVersion string    `json:"server_version"`
	ToolVersion   string    `json:"tool_version"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	Size          int64     `json:"size"`   // total bytes stored
	SHA256        string    `json:"sha256"` // digest of the sorted "digest  name" lines
	Files         []File    `json:"files"`
}

// StoredBaseBackup is a listed base backup: its manifest and its latest
// verification (restore + pg_verifybackup), nil if never verified.
type StoredBaseBackup struct {
	BaseManifest
	LastVerify *DrillRecord
}

// Good reports whether the base backup's latest verification, if any,
// passed.
func (b StoredBaseBackup) Good() bool { return b.LastVerify == nil || b.LastVerify.Passed }

// StoreBaseBackup takes a base backup with pg_basebackup in tar format
// (WAL streamed alongside, a backup_manifest with SHA-256 checksums) into
// a staging directory under opts.TempDir, then stores every file in repo
// under base/<id>/ with its SHA-256 and writes the BaseManifest last.
// opts.Dir is not used. A failure leaves nothing in the repository.
func StoreBaseBackup(ctx context.Context, repo Repository, opts BaseBackupOptions) (*BaseManifest, error) {
	if repo == nil {
		return nil, fmt.Errorf("%w: nil repository", ErrConfig)
	}
	tmp := opts.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	stage, err := os.MkdirTemp(tmp, "justpg-base-")
	if err != nil {
		return nil, fmt.Errorf("backup: staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	opts.Dir = filepath.Join(stage, "b")
	opts.tar = true
	info, err := BaseBackup(ctx, opts)
	if err != nil {
		return nil, err
	}
	man := &BaseManifest{ID: newID(info.Started), ServerVersion: info.ServerVersion, ToolVersion: info.ToolVersion,
		Started: info.Started, Finished: info.Finished}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("backup: reading the base backup: %w", err)
	}
	prefix := basePrefix + man.ID + "/"
	fail := func(err error) (*BaseManifest, error) {
		_ = removeObjects(context.WithoutCancel(ctx), repo, prefix)
		return nil, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return fail(fmt.Errorf("backup: unexpected %s in pg_basebackup's tar output", e.Name()))
		}
		f, err := os.Open(filepath.Join(opts.Dir, e.Name()))
		if err != nil {
			return fail(fmt.Errorf("backup: %w", err))
		}
		h := sha256.New()
		n, err := repo.Put(ctx, prefix+e.Name(), io.TeeReader(f, h))
		f.Close()
		if err != nil {
			return fail(err)
		}
		man.Size += n
		man.Files = append(man.Files, File{Name: e.Name(), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if !hasFile(man.Files, "base.tar") && !hasFile(man.Files, "base.tar.gz") {
		return fail(fmt.Errorf("backup: pg_basebackup wrote no base.tar"))
	}
	man.SHA256 = backupDigest(FormatDirectory, man.Files)
	if err := putJSON(ctx, repo, prefix+"manifest.json", man); err != nil {
		return fail(fmt.Errorf("backup: writing base backup manifest: %w", err))
	}
	return man, nil
}

func hasFile(files []File, name string) bool {
	for _, f := range files {
		if f.Name == name {
			return true
		}
	}
	return false
}

// removeObjects deletes everything under prefix, manifest.json first.
func removeObjects(ctx context.Context, repo Repository, prefix string) error {
	if err := repo.Remove(ctx, prefix+"manifest.json"); err != nil {
		return err
	}
	objs, err := repo.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := repo.Remove(ctx, o.Name); err != nil {
			return err
		}
	}
	return nil
}

// ListBaseBackups reads every finished base backup in repo, oldest first.
func ListBaseBackups(ctx context.Context, repo Repository) ([]StoredBaseBackup, error) {
	entries, err := listStored[BaseManifest](ctx, repo, basePrefix, "verify-")
	if err != nil {
		return nil, err
	}
	out := make([]StoredBaseBackup, len(entries))
	for i, e := range entries {
		out[i] = StoredBaseBackup{BaseManifest: e.man, LastVerify: e.record}
	}
	return out, nil
}

func readBaseManifest(ctx context.Context, repo Repository, id string) (*BaseManifest, error) {
	return readStoredManifest(ctx, repo, basePrefix, id, "base backup", func(m *BaseManifest) string { return m.ID })
}

// RestoreBaseBackup unpacks base backup id from repo into dir (which must
// not exist or be empty) as a plain data directory, checking every file's
// size and SHA-256 against the manifest as it reads it. On any mismatch it
// removes what it wrote and fails with ErrChecksum. The result is what
// PITROptions.BaseBackup and VerifyBaseBackup take.
func RestoreBaseBackup(ctx context.Context, repo Repository, id, dir string) (*BaseManifest, error) {
	man, err := readBaseManifest(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%w: directory %s is not empty", ErrConfig, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := restoreBase(ctx, repo, man, dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return man, nil
}

func restoreBase(ctx context.Context, repo Repository, man *BaseManifest, dir string) error {
	if len(man.Files) == 0 {
		return fmt.Errorf("%w: base backup %s lists no files", ErrChecksum, man.ID)
	}
	if got := backupDigest(FormatDirectory, man.Files); got != man.SHA256 {
		return fmt.Errorf("%w: base backup %s digest %s, the manifest says %s", ErrChecksum, man.ID, got, man.SHA256)
	}
	for _, f := range man.Files {
		if err := ValidateName(f.Name); err != nil || strings.Contains(f.Name, "/") {
			return fmt.Errorf("%w: base backup %s lists file %q", ErrChecksum, man.ID, f.Name)
		}
		name := basePrefix + man.ID + "/" + f.Name
		r, err := repo.Open(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: %s is missing", ErrChecksum, name)
		}
		if err != nil {
			return err
		}
		h := sha256.New()
		cr := &countingReader{r: io.TeeReader(ctxReader{ctx, r}, h)}
		err = unpackFile(f.Name, cr, dir)
		if err == nil {
			_, err = io.Copy(io.Discard, cr) // the rest, for the digest
		}
		r.Close()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if cr.n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
			return fmt.Errorf("%w: %s has %d bytes with another SHA-256 than the manifest records (%d bytes): changed or truncated after writing",
				ErrChecksum, name, cr.n, f.Size)
		}
		if err != nil {
			return fmt.Errorf("backup: unpacking %s: %w", name, err)
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// unpackFile places one stored file of a tar-format base backup: base.tar
// into dir, pg_wal.tar into dir/pg_wal, <oid>.tar into dir/pg_tblspc/<oid>
// (a directory instead of the original tablespace symlink) and
// backup_manifest as is.
func unpackFile(name string, r io.Reader, dir string) error {
	if name == "backup_manifest" {
		return writeFile(filepath.Join(dir, name), r, 0o600)
	}
	base, gz := strings.CutSuffix(name, ".gz")
	stem, ok := strings.CutSuffix(base, ".tar")
	if !ok {
		return fmt.Errorf("unexpected file %s", name)
	}
	target := dir
	switch {
	case stem == "base":
	case stem == "pg_wal":
		target = filepath.Join(dir, "pg_wal")
	case strings.Trim(stem, "0123456789") == "":
		target = filepath.Join(dir, "pg_tblspc", stem)
	default:
		return fmt.Errorf("unexpected file %s", name)
	}
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	return untar(r, target, stem == "base")
}

func untar(r io.Reader, dst string, isBase bool) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("unsafe path %q in the archive", h.Name)
		}
		p := filepath.Join(dst, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			if err := writeFile(p, tr, fs.FileMode(h.Mode).Perm()|0o600); err != nil {
				return err
			}
		case tar.TypeSymlink:
			// Tablespace links: their contents come from <oid>.tar into a
			// directory of that name.
			if isBase && strings.HasPrefix(name, "pg_tblspc/") {
				if err := os.MkdirAll(p, 0o700); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("unexpected symlink %q in the archive", h.Name)
		default:
			return fmt.Errorf("unexpected entry %q (type %c) in the archive", h.Name, h.Typeflag)
		}
	}
}

func writeFile(p string, r io.Reader, perm fs.FileMode) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// VerifyStoredBaseBackup proves base backup id: it unpacks it into a
// temporary directory under tempDir (default os.TempDir()), checking
// every file's SHA-256, runs pg_verifybackup on the result (every data
// file's checksum against backup_manifest, and the WAL needed to make it
// consistent), removes the directory and records the outcome next to the
// backup, where retention reads it. A failure wraps ErrChecksum.
func VerifyStoredBaseBackup(ctx context.Context, repo Repository, id, binDir, tempDir string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if tempDir == "" {
		tempDir = os.TempDir()
	}
	started := time.Now().UTC()
	err := func() error {
		tmp, err := os.MkdirTemp(tempDir, "justpg-verify-base-")
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir := filepath.Join(tmp, "data")
		if _, err := RestoreBaseBackup(ctx, repo, id, dir); err != nil {
			return err
		}
		return VerifyBaseBackup(ctx, binDir, dir)
	}()
	if ctx.Err() != nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidName) {
		return err // nothing learnt about the backup
	}
	var te *ToolError
	if errors.As(err, &te) {
		return err
	}
	rec := DrillRecord{At: started, Passed: err == nil, Restore: time.Since(started)}
	if err != nil {
		rec.Error = err.Error()
	}
	name := basePrefix + id + "/verify-" + started.Format("20060102T150405.000000000Z") + ".json"
	if perr := putJSON(context.WithoutCancel(ctx), repo, name, rec); perr != nil && err == nil {
		return fmt.Errorf("backup: recording the verification: %w", perr)
	}
	return err
}

// PruneBaseBackups applies a grandfather-father-son Retention to the base
// backups in repo and deletes the ones it does not keep (each one's
// manifest first). Like Prune, it never deletes the newest good base
// backup. WAL archived before the oldest kept base backup is no longer
// needed for recovery from these backups.
func PruneBaseBackups(ctx context.Context, repo Repository, r Retention) (kept, removed []StoredBaseBackup, err error) {
	list, err := ListBaseBackups(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	items := make([]retItem, len(list))
	for i, b := range list {
		items[i] = retItem{id: b.ID, started: b.Started, good: b.Good()}
	}
	keep, remove, err := planBy(r, list, items)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range remove {
		if err := removeObjects(ctx, repo, basePrefix+b.ID+"/"); err != nil {
			return keep, removed, fmt.Errorf("backup: pruning base backup %s: %w", b.ID, err)
		}
		removed = append(removed, b)
	}
	return keep, removed, nil
}

package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Repository stores backup files under slash-separated names such as
// "logical/20261127T162545Z-3f9a1c/dump". Implementations must make Put
// atomic and exclusive: after a crash an object either exists whole (durably)
// or not at all, and Put never replaces an existing object.
//
// DirRepository is the local implementation; other stores (object storage,
// SFTP) can be added behind this interface.
type Repository interface {
	// Put stores everything read from r under name. It fails with ErrExists
	// when name already exists and with the reader's error when reading
	// fails; in both cases nothing is stored.
	Put(ctx context.Context, name string, r io.Reader) (int64, error)
	// Open reads the object name; ErrNotFound when there is none.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Stat describes the object name; ErrNotFound when there is none.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List returns the objects whose names start with prefix, sorted by
	// name. Temporary files of unfinished Puts are never listed.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Remove deletes the object name; removing a missing object is not an
	// error.
	Remove(ctx context.Context, name string) error
}

// LocalRepository is implemented by repositories whose objects are files on
// this machine. The drill and restore give such paths to pg_restore directly
// (which allows parallel restores) instead of streaming a copy.
type LocalRepository interface {
	Repository
	// LocalPath returns the file holding name.
	LocalPath(name string) (string, error)
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name string
	Size int64
}

// Repository errors.
var (
	// ErrExists is returned by Put when the name is already taken.
	ErrExists = errors.New("backup: object already exists")
	// ErrNotFound is returned when an object, backup or WAL file does not exist.
	ErrNotFound = errors.New("backup: not found")
	// ErrInvalidName is wrapped by errors about object names.
	ErrInvalidName = errors.New("backup: invalid object name")
)

// tempPrefix starts the names of temporary files; valid object names never
// have a path element starting with ".".
const tempPrefix = ".tmp-"

// ValidateName checks an object name: slash-separated, relative, no empty,
// "." or ".." elements, no element starting with "." (reserved for temporary
// files), no backslash or control characters.
func ValidateName(name string) error {
	if name == "" || len(name) > 1024 {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: %q contains a control character or backslash", ErrInvalidName, name)
		}
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || strings.HasPrefix(el, ".") {
			return fmt.Errorf("%w: %q (empty element or element starting with '.')", ErrInvalidName, name)
		}
	}
	return nil
}

// DirRepository is a Repository in a local directory. Put writes a temporary
// file next to the target, fsyncs it, links it into place (which fails if the
// target exists, so nothing is ever overwritten), removes the temporary name
// and fsyncs the directory. Temporary files left by a crash are ignored and
// can be removed with CleanTemp.
type DirRepository struct {
	root string
	perm fs.FileMode // of new files; directories add search permission
}

// NewDirRepository returns the repository in directory root, creating it
// (mode 0750) when it does not exist.
func NewDirRepository(root string) (*DirRepository, error) {
	if root == "" {
		return nil, errors.New("backup: repository directory is empty")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("backup: repository %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("backup: creating repository %s: %w", abs, err)
	}
	return &DirRepository{root: abs, perm: 0o640}, nil
}

// Root is the repository's directory.
func (d *DirRepository) Root() string { return d.root }

// LocalPath returns the file that holds name.
func (d *DirRepository) LocalPath(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(name)), nil
}

// Put implements Repository.
func (d *DirRepository) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	target, err := d.LocalPath(name)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(target)
	if err := d.mkdirAll(dir); err != nil {
		return 0, fmt.Errorf("backup: repository: %w", err)
	}
	if _, err := os.Lstat(target); err == nil {
		return 0, fmt.Errorf("%w: %s", ErrExists, name)
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+path.Base(name)+"-*")
	if err != nil {
		return 0, fmt.Errorf("backup: repository: creating temporary file: %w", err)
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(d.perm); err != nil {
		return 0, fmt.Errorf("backup: repository: %w", err)
	}
	n, err := io.Copy(tmp, ctxReader{ctx, r})
	if err != nil {
		return n, fmt.Errorf("backup: writing %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return n, fmt.Errorf("backup: fsync %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return n, fmt.Errorf("backup: closing %s: %w", name, err)
	}
	if err := os.Link(tmpName, target); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return n, fmt.Errorf("%w: %s", ErrExists, name)
		}
		if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EXDEV) {
			return n, fmt.Errorf("backup: linking %s into place: %w", name, err)
		}
		// The file system has no hard links: rename, having checked above
		// that the target did not exist.
		if err := os.Rename(tmpName, target); err != nil {
			return n, fmt.Errorf("backup: renaming %s into place: %w", name, err)
		}
	}
	committed = true
	_ = os.Remove(tmpName)
	if err := syncDir(dir); err != nil {
		return n, fmt.Errorf("backup: fsync directory of %s: %w", name, err)
	}
	return n, nil
}

func (d *DirRepository) mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir && parent != d.root {
		if err := d.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, d.perm|0o110|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// Open implements Repository.
func (d *DirRepository) Open(_ context.Context, name string) (io.ReadCloser, error) {
	p, err := d.LocalPath(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return f, nil
}

// Stat implements Repository.
func (d *DirRepository) Stat(_ context.Context, name string) (ObjectInfo, error) {
	p, err := d.LocalPath(name)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !st.Mode().IsRegular()) {
		return ObjectInfo{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("backup: %w", err)
	}
	return ObjectInfo{Name: name, Size: st.Size()}, nil
}

// List implements Repository.
func (d *DirRepository) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == d.root {
			return nil
		}
		if strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(d.root, p)
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			// Skip subtrees that cannot contain the prefix.
			if !strings.HasPrefix(rel+"/", prefix) && !strings.HasPrefix(prefix, rel+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(rel, prefix) {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		out = append(out, ObjectInfo{Name: rel, Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: listing repository: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove implements Repository. Directories left empty are removed too.
func (d *DirRepository) Remove(_ context.Context, name string) error {
	p, err := d.LocalPath(name)
	if err != nil {
		return err
	}
	missing := false
	if err := os.Remove(p); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("backup: removing %s: %w", name, err)
		}
		missing = true
	}
	// Remove the directories this leaves empty (also those left by a
	// failed Put).
	dir := filepath.Dir(p)
	for dir != d.root && strings.HasPrefix(dir, d.root) {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			break // not empty
		}
		dir = filepath.Dir(dir)
	}
	if missing {
		return nil
	}
	return syncDir(dir)
}

// CleanTemp removes temporary files left by Puts that never finished (a
// crash, a kill, a full disk) and returns how many it removed. Run it only
// when no Put is in progress.
func (d *DirRepository) CleanTemp(ctx context.Context) (int, error) {
	n := 0
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.IsDir() && strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(p); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("backup: cleaning temporary files: %w", err)
	}
	return n, nil
}

// ctxReader stops a copy when the context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

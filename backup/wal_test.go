package backup_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
)

const seg = "000000010000000000000003"

func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, content, 0o600))
	return p
}

func TestArchiveWALSemantics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repoDir := t.TempDir()
	repo, err := backup.NewDirRepository(repoDir)
	require.NoError(t, err)
	src := t.TempDir()
	content := bytes.Repeat([]byte("wal-record "), 1<<14)
	p := writeFile(t, src, seg, content)
	archived := filepath.Join(repoDir, "wal", seg)

	t.Run("partial temp left by a crash is ignored", func(t *testing.T) {
		// A crash mid-copy leaves only a temporary file; it must not count
		// as archived, and must not stop the next attempt.
		require.NoError(t, os.MkdirAll(filepath.Join(repoDir, "wal"), 0o750))
		writeFile(t, filepath.Join(repoDir, "wal"), ".tmp-"+seg+"-crashed", content[:1000])
		_, err := repo.Stat(ctx, "wal/"+seg)
		require.ErrorIs(t, err, backup.ErrNotFound)
		objs, err := repo.List(ctx, "wal/")
		require.NoError(t, err)
		assert.Empty(t, objs)
	})
	t.Run("new", func(t *testing.T) {
		require.NoError(t, backup.ArchiveWAL(ctx, repo, p, seg))
		got, err := os.ReadFile(archived)
		require.NoError(t, err)
		assert.Equal(t, content, got)
	})
	t.Run("identical again succeeds", func(t *testing.T) {
		require.NoError(t, backup.ArchiveWAL(ctx, repo, p, seg))
	})
	t.Run("different content fails and keeps the archived copy", func(t *testing.T) {
		other := append([]byte{}, content...)
		other[len(other)/2] ^= 1
		p2 := writeFile(t, t.TempDir(), seg, other)
		err := backup.ArchiveWAL(ctx, repo, p2, seg)
		require.ErrorIs(t, err, backup.ErrWALConflict)
		got, rerr := os.ReadFile(archived)
		require.NoError(t, rerr)
		assert.Equal(t, content, got)
		// a different size too
		p3 := writeFile(t, t.TempDir(), seg, content[:100])
		require.ErrorIs(t, backup.ArchiveWAL(ctx, repo, p3, seg), backup.ErrWALConflict)
	})
	t.Run("temporary files can be cleaned", func(t *testing.T) {
		n, err := repo.CleanTemp(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		entries, err := os.ReadDir(filepath.Join(repoDir, "wal"))
		require.NoError(t, err)
		require.Len(t, entries, 1)
		assert.Equal(t, seg, entries[0].Name())
	})
	t.Run("restore", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		require.NoError(t, backup.RestoreWAL(ctx, repo, seg, dst))
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		assert.Equal(t, content, got)
		err = backup.RestoreWAL(ctx, repo, "00000002.history", dst)
		assert.ErrorIs(t, err, backup.ErrNotFound)
	})
	t.Run("bad names and missing source", func(t *testing.T) {
		for _, name := range []string{"", "../x", "00000001000000000000000", "000000010000000000000003/../../x", "RECOVERYXLOG"} {
			assert.ErrorIs(t, backup.ArchiveWAL(ctx, repo, p, name), backup.ErrInvalidName, name)
			assert.ErrorIs(t, backup.RestoreWAL(ctx, repo, name, p), backup.ErrInvalidName, name)
		}
		assert.ErrorIs(t, backup.ArchiveWAL(ctx, repo, filepath.Join(src, "nope"), "000000010000000000000004"), os.ErrNotExist)
	})
}

func TestDirRepository(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, err := backup.NewDirRepository(t.TempDir())
	require.NoError(t, err)
	n, err := repo.Put(ctx, "a/b/c", bytes.NewReader([]byte("hello")))
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	_, err = repo.Put(ctx, "a/b/c", bytes.NewReader([]byte("other")))
	require.ErrorIs(t, err, backup.ErrExists)
	r, err := repo.Open(ctx, "a/b/c")
	require.NoError(t, err)
	buf := new(bytes.Buffer)
	_, _ = buf.ReadFrom(r)
	r.Close()
	assert.Equal(t, "hello", buf.String(), "never overwritten")
	for _, bad := range []string{"", "/abs", "a/../b", "a//b", ".hidden", "a/.tmp-x", "a\\b", "a\nb"} {
		_, err := repo.Put(ctx, bad, bytes.NewReader(nil))
		assert.ErrorIs(t, err, backup.ErrInvalidName, bad)
	}
	_, err = repo.Open(ctx, "missing")
	assert.ErrorIs(t, err, backup.ErrNotFound)
	require.NoError(t, repo.Remove(ctx, "a/b/c"))
	require.NoError(t, repo.Remove(ctx, "a/b/c"), "removing twice is fine")
	entries, err := os.ReadDir(repo.Root())
	require.NoError(t, err)
	assert.Empty(t, entries, "empty directories are removed")
	// An unusable repository location is reported, not ignored.
	blocker := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))
	_, err = backup.NewDirRepository(filepath.Join(blocker, "repo"))
	require.Error(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(repo.Root(), "d"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(repo.Root(), "d", "f"), nil, 0o600))
	_, err = repo.Put(ctx, "d/f/g", bytes.NewReader([]byte("x")))
	require.Error(t, err, "a path through a file cannot be written")
	require.NoError(t, os.RemoveAll(filepath.Join(repo.Root(), "d")))
	// A reader error stores nothing.
	_, err = repo.Put(ctx, "x", &failingReader{})
	require.Error(t, err)
	objs, err := repo.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, objs)
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		return 0, os.ErrDeadlineExceeded
	}
	f.n++
	return copy(p, "partial"), nil
}

func FuzzValidateWALName(f *testing.F) {
	for _, s := range []string{seg, seg + ".partial", seg + ".00000028.backup", "00000002.history", "../x", "", "0000000100000000000000GG"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if backup.ValidateWALName(name) == nil {
			// every accepted name is also a safe repository name element
			require.NoError(t, backup.ValidateName("wal/"+name))
			require.NotContains(t, name, "/")
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/./b", "logical/20261127T162545.123Z-3f9a1c/dump", ".tmp-x", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if backup.ValidateName(name) != nil {
			return
		}
		clean := filepath.Clean("/root/" + name)
		require.Equal(t, "/root/"+name, clean, "accepted names never escape or alias the root")
	})
}

package files_test

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
)

// heapSampler records the peak HeapInuse while a streaming operation runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load()
}

// TestLargeFileMemoryFlat streams a 200 MiB file in and out and asserts that
// the heap grows by a bounded amount, independent of the file size. It is
// not parallel, so no other test's allocations blur the measurement.
// JUSTPG_FILES_LARGE_MIB changes the size.
func TestLargeFileMemoryFlat(t *testing.T) {
	size := int64(200 << 20)
	if v := os.Getenv("JUSTPG_FILES_LARGE_MIB"); v != "" {
		mib, err := strconv.Atoi(v)
		require.NoError(t, err)
		size = int64(mib) << 20
	}
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{})
	want := patternSum(size)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	h := sampleHeap()
	f, err := s.Put(ctx, db.Pool, newPattern(size), files.PutOptions{Name: "large.bin"})
	putPeak := h.Stop()
	require.NoError(t, err)
	require.Equal(t, size, f.Size)
	require.Equal(t, want, f.SHA256)

	runtime.GC()
	var mid runtime.MemStats
	runtime.ReadMemStats(&mid)
	h = sampleHeap()
	r, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	sum := sha256.New()
	n, err := io.Copy(sum, r)
	getPeak := h.Stop()
	require.NoError(t, err)
	require.Equal(t, size, n)
	require.Equal(t, want[:], sum.Sum(nil))
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	const bound = 48 << 20 // a few chunks and pgx buffers; the file is 200 MiB
	t.Logf("put: heap in use %d MiB -> peak %d MiB, allocated %d MiB; get: heap %d MiB -> peak %d MiB, allocated %d MiB",
		before.HeapInuse>>20, putPeak>>20, (mid.TotalAlloc-before.TotalAlloc)>>20,
		mid.HeapInuse>>20, getPeak>>20, (after.TotalAlloc-mid.TotalAlloc)>>20)
	assert.Less(t, putPeak-min(putPeak, before.HeapInuse), uint64(bound), "heap growth while uploading")
	assert.Less(t, getPeak-min(getPeak, mid.HeapInuse), uint64(bound), "heap growth while downloading")
	// Uploading reuses one chunk buffer, so it allocates a small fraction of
	// the file. (Downloading allocates a message buffer per chunk inside pgx,
	// recycled through sync.Pool and the GC; its bound is the heap check.)
	assert.Less(t, mid.TotalAlloc-before.TotalAlloc, uint64(size/8), "bytes allocated while uploading")
}

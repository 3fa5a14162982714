// Command files compares justpg/files with the alternatives a team would
// use instead: a naive single bytea column and the local filesystem. It
// measures upload and download throughput and the peak RSS of the client
// process, for 1 MiB, 32 MiB and 512 MiB files by default.
//
//	go run ./files                       # from bench/
//	go run ./files -sizes 1,32 -reps 3   # smaller, repeated
//
// Every (contender, size) runs in a fresh child process of this program, so
// that its peak RSS (VmHWM from /proc/self/status, reset with
// /proc/self/clear_refs between upload and download) is its own. The
// PostgreSQL server is a local throwaway cluster with durability ON (fsync,
// synchronous_commit, full_page_writes), since the filesystem contender
// fsyncs too; BENCH_DATABASE_URL uses another server instead.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/bench/internal/benchdb"
	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgtest"
)

var contenders = []string{"justpg-chunks", "justpg-largeobject", "naive-bytea", "filesystem"}

// The ceiling contenders are not options a user would pick: they measure
// what PostgreSQL can do at best with the same bytes on this machine, for
// any design. pg-ceiling is one bare binary COPY of 8000-byte chunks into
// an unindexed table (no hashing, no bookkeeping) and one SELECT of them back
// (binary format, rows written out as they arrive); pg-ceiling-2conn splits
// both over two connections in parallel.
var ceilings = []string{"pg-ceiling", "pg-ceiling-2conn"}

type result struct {
	Contender  string  `json:"contender"`
	SizeMiB    int     `json:"size_mib"`
	UploadMBs  float64 `json:"upload_mib_s"`
	DownMBs    float64 `json:"download_mib_s"`
	UploadRSS  int64   `json:"upload_peak_rss_kib"`
	DownRSS    int64   `json:"download_peak_rss_kib"`
	BaseRSSKiB int64   `json:"base_rss_kib"`
	// CPU milliseconds per MiB moved, client process and server backend
	// (from /proc; -1 when the backend is not on this machine).
	UpClientCPU float64 `json:"upload_client_cpu_ms_per_mib"`
	// WAL written per MiB uploaded (whole cluster; only this contender
	// runs).
	UpWALMiB      float64 `json:"upload_wal_mib_per_mib"`
	UpServerCPU   float64 `json:"upload_server_cpu_ms_per_mib"`
	DownClientCPU float64 `json:"download_client_cpu_ms_per_mib"`
	DownServerCPU float64 `json:"download_server_cpu_ms_per_mib"`
	// AgainDownMBs is a second download right after the first, from warm
	// caches (PostgreSQL's first read of fresh rows also sets their hint
	// bits, a one-time cost).
	AgainDownMBs float64 `json:"again_download_mib_s"`
	// ColdDownMBs is the download throughput after the OS page cache was
	// dropped (-cold); 0 when not measured.
	ColdDownMBs float64 `json:"cold_download_mib_s"`
}

func main() {
	child := flag.String("child", "", "internal: run one contender")
	sizesFlag := flag.String("sizes", "1,32,512", "file sizes in MiB")
	reps := flag.Int("reps", 1, "repetitions per size (best is kept)")
	only := flag.String("only", "", "comma-separated contenders to run (default all)")
	chunk := flag.Int("chunk", 0, "chunk size in bytes for justpg (0 = files.DefaultChunkSize)")
	pgSettings := flag.String("pg", "", "server settings for the throwaway cluster, e.g. shared_buffers=1GB,max_wal_size=4GB")
	unix := flag.Bool("unix", false, "connect to the throwaway cluster over its Unix socket instead of TCP on 127.0.0.1")
	cold := flag.Bool("cold", false, "also download once more after dropping the OS page cache (needs root: writes /proc/sys/vm/drop_caches)")
	flag.Parse()
	if *child != "" {
		size, _ := strconv.Atoi(flag.Arg(0))
		if err := runChild(*child, size, *reps, *chunk, *cold); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := runParent(*sizesFlag, *reps, *only, *chunk, *pgSettings, *cold, *unix); err != nil {
		log.Fatal(err)
	}
}

func runParent(sizesFlag string, reps int, only string, chunk int, pgSettings string, cold, unix bool) error {
	ctx := context.Background()
	var srv *pgtest.Server
	var err error
	if os.Getenv("BENCH_DATABASE_URL") != "" {
		s, err := benchdb.Start(ctx)
		if err != nil {
			return err
		}
		srv = s.Server
	} else {
		// PostgreSQL's stock configuration apart from durability, which the
		// throwaway cluster turns off unless asked (pgtest raises
		// max_wal_size to 2GB; put back the default 1GB).
		settings := map[string]string{"max_wal_size": "1GB"}
		for _, kv := range strings.Split(pgSettings, ",") {
			if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
				settings[k] = v
			}
		}
		srv, err = pgtest.StartLocal(ctx, pgtest.ClusterOptions{Durable: true, Settings: settings})
		if err != nil {
			return err
		}
	}
	defer func() { _ = srv.Stop(context.Background()) }()
	bs := &benchdb.Server{Server: srv}
	socketDir := ""
	if unix {
		// pgtest puts the socket in the parent of the data directory.
		dataDir, err := srv.DataDir()
		if err != nil {
			return fmt.Errorf("-unix needs the throwaway cluster: %w", err)
		}
		socketDir = filepath.Dir(dataDir)
	}

	var sizes []int
	for _, s := range strings.Split(sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad size %q", s)
		}
		sizes = append(sizes, n)
	}
	run := contenders
	if only != "" {
		run = strings.Split(only, ",")
		for _, c := range run {
			if !slices.Contains(contenders, c) && !slices.Contains(ceilings, c) {
				return fmt.Errorf("unknown contender %q (known: %s, %s)", c, strings.Join(contenders, ", "), strings.Join(ceilings, ", "))
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("machine: %s\nserver: %s (durable: %v, settings: %q, unix socket: %v)\n\n", benchdb.Machine(), srv.Kind(), os.Getenv("BENCH_DATABASE_URL") == "", pgSettings, unix)
	var results []result
	for _, size := range sizes {
		for _, c := range run {
			pool, url, err := bs.FreshDB(ctx, "bench_files", 4)
			if err != nil {
				return err
			}
			if err := files.Migrate(ctx, pool); err != nil {
				return err
			}
			if _, err := pool.Exec(ctx, `CREATE TABLE naive_files (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, data bytea);
				CREATE TABLE ceiling_chunks (blob_id bigint NOT NULL, n integer NOT NULL, data bytea NOT NULL) WITH (toast_tuple_target = 8160);
				ALTER TABLE ceiling_chunks ALTER COLUMN data SET STORAGE EXTERNAL`); err != nil {
				return err
			}
			pool.Close()
			cmd := exec.Command(exe, "-child", c, "-reps", strconv.Itoa(reps), "-chunk", strconv.Itoa(chunk), "-cold="+strconv.FormatBool(cold), strconv.Itoa(size))
			cmd.Env = append(os.Environ(), "BENCH_FILES_URL="+url, "BENCH_FILES_SOCKET="+socketDir)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s %d MiB: %w", c, size, err)
			}
			var r result
			if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
				return fmt.Errorf("%s: bad output %q: %w", c, out, err)
			}
			results = append(results, r)
			fmt.Printf("%-19s %4d MiB  upload %7.1f MiB/s  download %7.1f MiB/s (again %7.1f, cold %7.1f)  peak RSS upload %6.1f MiB, download %6.1f MiB (idle %4.1f MiB)  CPU ms/MiB up %5.1f+%5.1f down %5.1f+%5.1f (client+server)  WAL %.2f MiB/MiB\n",
				r.Contender, r.SizeMiB, r.UploadMBs, r.DownMBs, r.AgainDownMBs, r.ColdDownMBs, float64(r.UploadRSS)/1024, float64(r.DownRSS)/1024, float64(r.BaseRSSKiB)/1024,
				r.UpClientCPU, r.UpServerCPU, r.DownClientCPU, r.DownServerCPU, r.UpWALMiB)
		}
	}
	fmt.Println("\nratios to the filesystem (same run):")
	for _, size := range sizes {
		var fsr *result
		for i := range results {
			if results[i].Contender == "filesystem" && results[i].SizeMiB == size {
				fsr = &results[i]
			}
		}
		if fsr == nil {
			continue
		}
		for _, r := range results {
			if r.SizeMiB != size || r.Contender == "filesystem" {
				continue
			}
			fmt.Printf("%-19s %4d MiB  upload %5.0f%%  download %5.0f%%", r.Contender, size,
				100*r.UploadMBs/fsr.UploadMBs, 100*r.DownMBs/fsr.DownMBs)
			fmt.Printf("  again %5.0f%%", 100*r.AgainDownMBs/fsr.AgainDownMBs)
			if fsr.ColdDownMBs > 0 {
				fmt.Printf("  cold download %5.0f%%", 100*r.ColdDownMBs/fsr.ColdDownMBs)
			}
			fmt.Println()
		}
	}
	return nil
}

// pattern is a fast deterministic byte source (a pseudo-random block
// repeated), so generating data costs next to nothing.
type pattern struct {
	off, n int64
	block  []byte
}

func newPattern(n int64) *pattern {
	b := make([]byte, 65521)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return &pattern{n: n, block: b}
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if rem := p.n - p.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	total := 0
	for len(b) > 0 {
		c := copy(b, p.block[p.off%int64(len(p.block)):])
		b = b[c:]
		p.off += int64(c)
		total += c
	}
	return total, nil
}

// procStatus reads a kB field of /proc/self/status.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

// resetPeak makes VmHWM restart from the current RSS (Linux ≥ 4.0).
func resetPeak() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// selfCPU returns this process's user+system CPU time in milliseconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}

// procCPU returns the user+system CPU time of process pid in milliseconds,
// from /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
// It returns 0 when pid is not readable (a remote server).
func procCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) * 10
}

type contender interface {
	upload(ctx context.Context, name string, r io.Reader, size int64) (string, error)
	download(ctx context.Context, id string, w io.Writer) (int64, error)
}

func runChild(name string, sizeMiB, reps, chunk int, cold bool) error {
	ctx := context.Background()
	size := int64(sizeMiB) << 20
	var c contender
	var pool *pgxpool.Pool
	var backendPIDs []int
	if name != "filesystem" {
		var err error
		cfg, err := pgxpool.ParseConfig(os.Getenv("BENCH_FILES_URL"))
		if err != nil {
			return err
		}
		if dir := os.Getenv("BENCH_FILES_SOCKET"); dir != "" {
			cfg.ConnConfig.Host = dir
		}
		// A fixed set of backends, opened up front, so that their CPU time
		// can be read.
		conns := 1
		if name == "pg-ceiling-2conn" {
			conns = 2
		}
		cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
		pool, err = pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer pool.Close()
		var held []*pgxpool.Conn
		for range conns {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return err
			}
			held = append(held, conn)
			var pid int
			if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			backendPIDs = append(backendPIDs, pid)
		}
		for _, conn := range held {
			conn.Release()
		}
	}
	serverCPU := func() float64 {
		var t float64
		for _, pid := range backendPIDs {
			t += procCPU(pid)
		}
		return t
	}
	switch name {
	case "justpg-chunks", "justpg-largeobject":
		cfg := files.Config{MaxSize: -1, ChunkSize: chunk}
		if name == "justpg-largeobject" {
			cfg.Storage = files.LargeObjects
		}
		s, err := files.New(cfg)
		if err != nil {
			return err
		}
		c = &justpg{s: s, db: pool}
	case "naive-bytea":
		c = &naive{db: pool}
	case "pg-ceiling":
		c = &ceiling{db: pool, conns: 1}
	case "pg-ceiling-2conn":
		c = &ceiling{db: pool, conns: 2}
	case "filesystem":
		dir, err := os.MkdirTemp("", "bench-files-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c = &filesystem{dir: dir}
	default:
		return fmt.Errorf("unknown contender %q", name)
	}
	r := result{Contender: name, SizeMiB: sizeMiB, BaseRSSKiB: procStatus("VmRSS")}
	mib := float64(sizeMiB) * float64(reps)
	for i := 0; i < reps; i++ {
		resetPeak()
		c0, s0 := selfCPU(), serverCPU()
		w0 := walBytes(ctx, pool)
		start := time.Now()
		id, err := c.upload(ctx, fmt.Sprintf("f%d.bin", i), newPattern(size), size)
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		up := time.Since(start)
		c1, s1 := selfCPU(), serverCPU()
		r.UpWALMiB += float64(walBytes(ctx, pool)-w0) / (1 << 20) / mib
		r.UpClientCPU += (c1 - c0) / mib
		r.UpServerCPU += (s1 - s0) / mib
		r.UploadRSS = max(r.UploadRSS, procStatus("VmHWM"))
		resetPeak()
		start = time.Now()
		n, err := c.download(ctx, id, io.Discard)
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		if n != size {
			return fmt.Errorf("download: %d bytes, want %d", n, size)
		}
		down := time.Since(start)
		c2, s2 := selfCPU(), serverCPU()
		r.DownClientCPU += (c2 - c1) / mib
		r.DownServerCPU += (s2 - s1) / mib
		r.DownRSS = max(r.DownRSS, procStatus("VmHWM"))
		r.UploadMBs = max(r.UploadMBs, float64(sizeMiB)/up.Seconds())
		r.DownMBs = max(r.DownMBs, float64(sizeMiB)/down.Seconds())
		start = time.Now()
		if n, err := c.download(ctx, id, io.Discard); err != nil || n != size {
			return fmt.Errorf("second download: %d bytes, want %d: %v", n, size, err)
		}
		r.AgainDownMBs = max(r.AgainDownMBs, float64(sizeMiB)/time.Since(start).Seconds())
		if cold {
			if err := dropCaches(); err != nil {
				return err
			}
			start = time.Now()
			if n, err := c.download(ctx, id, io.Discard); err != nil || n != size {
				return fmt.Errorf("cold download: %d bytes, want %d: %v", n, size, err)
			}
			r.ColdDownMBs = max(r.ColdDownMBs, float64(sizeMiB)/time.Since(start).Seconds())
		}
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// dropCaches writes dirty pages out and empties the OS page cache, so that
// the next read comes from the disk (PostgreSQL's own shared_buffers are not
// affected; a bulk COPY leaves at most a 16 MB ring of them).
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("-cold needs root: %w", err)
	}
	return nil
}

// walBytes returns the current WAL position in bytes (0 for the
// filesystem), so that two calls measure the WAL written between them.
func walBytes(ctx context.Context, pool *pgxpool.Pool) int64 {
	if pool == nil {
		return 0
	}
	var n int64
	_ = pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`).Scan(&n)
	return n
}

type justpg struct {
	s  *files.Store
	db *pgxpool.Pool
}

func (j *justpg) upload(ctx context.Context, name string, r io.Reader, size int64) (string, error) {
	f, err := j.s.Put(ctx, j.db, r, files.PutOptions{Name: name, ContentType: "application/octet-stream", Size: size})
	return f.ID, err
}

func (j *justpg) download(ctx context.Context, id string, w io.Writer) (int64, error) {
	rd, err := j.s.Get(ctx, j.db, id)
	if err != nil {
		return 0, err
	}
	return io.Copy(w, rd)
}

// naive is what a first version usually does: read the upload into memory,
// INSERT it as one bytea value, SELECT it back as one value.
type naive struct{ db *pgxpool.Pool }

func (n *naive) upload(ctx context.Context, name string, r io.Reader, size int64) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	var id int64
	err = n.db.QueryRow(ctx, `INSERT INTO naive_files (name, data) VALUES ($1, $2) RETURNING id`, name, data).Scan(&id)
	return strconv.FormatInt(id, 10), err
}

func (n *naive) download(ctx context.Context, id string, w io.Writer) (int64, error) {
	var data []byte
	if err := n.db.QueryRow(ctx, `SELECT data FROM naive_files WHERE id = $1`, id).Scan(&data); err != nil {
		return 0, err
	}
	m, err := w.Write(data)
	return int64(m), err
}

// filesystem is the physical reference: write and fsync a file (and its
// directory), read it back.
type filesystem struct{ dir string }

func (f *filesystem) upload(ctx context.Context, name string, r io.Reader, size int64) (string, error) {
	p := filepath.Join(f.dir, name)
	fh, err := os.Create(p)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(fh, r); err != nil {
		fh.Close()
		return "", err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return "", err
	}
	if err := fh.Close(); err != nil {
		return "", err
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return "", err
	}
	defer d.Close()
	return p, d.Sync()
}

func (f *filesystem) download(ctx context.Context, id string, w io.Writer) (int64, error) {
	fh, err := os.Open(id)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	return io.Copy(w, fh)
}

// ceiling is PostgreSQL at its best with the same bytes: bare binary COPY of
// 8000-byte chunks into an unindexed table, without hashing or any
// bookkeeping, and one SELECT that writes rows out as they arrive. With
// conns > 1 the chunks are split into that many interleaved parts written
// and read in parallel, each on its own connection.
type ceiling struct {
	db    *pgxpool.Pool
	conns int
	next  int64
}

const ceilingChunk = 8000

// rawChunks feeds COPY chunk number part, part+parts, part+2*parts… of r,
// which the parts share under mu.
type rawChunks struct {
	mu         *sync.Mutex
	r          io.Reader
	id         int64
	buf        []byte
	n          int32
	idx, parts int32
	done       *bool
	err        error
}

func (c *rawChunks) Next() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *c.done {
		return false
	}
	n, err := io.ReadFull(c.r, c.buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		*c.done = true
		err = nil
	}
	if err != nil {
		c.err = err
		return false
	}
	if n == 0 {
		return false
	}
	c.n = int32(n)
	c.idx += c.parts
	return true
}

func (c *rawChunks) Values() ([]any, error) { return []any{c.id, c.idx, c.buf[:c.n]}, nil }
func (c *rawChunks) Err() error             { return c.err }

func (c *ceiling) upload(ctx context.Context, name string, r io.Reader, size int64) (string, error) {
	// The table holds one file at a time, so that reads scan only it.
	if _, err := c.db.Exec(ctx, `TRUNCATE ceiling_chunks`); err != nil {
		return "", err
	}
	c.next++
	id := c.next
	var mu sync.Mutex
	var done bool
	errs := make(chan error, c.conns)
	for part := range c.conns {
		src := &rawChunks{mu: &mu, r: r, id: id, buf: make([]byte, ceilingChunk), idx: int32(part - c.conns), parts: int32(c.conns), done: &done}
		go func() {
			_, err := c.db.CopyFrom(ctx, pgx.Identifier{"ceiling_chunks"}, []string{"blob_id", "n", "data"}, src)
			errs <- err
		}()
	}
	var first error
	for range c.conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return strconv.FormatInt(id, 10), first
}

func (c *ceiling) download(ctx context.Context, id string, w io.Writer) (int64, error) {
	// Parts read disjoint page ranges (TID range scans), not the table twice.
	var pages int64
	if err := c.db.QueryRow(ctx, `SELECT pg_relation_size('ceiling_chunks') / current_setting('block_size')::bigint`).Scan(&pages); err != nil {
		return 0, err
	}
	per := pages/int64(c.conns) + 1
	var mu sync.Mutex
	var total int64
	errs := make(chan error, c.conns)
	for part := range c.conns {
		go func() {
			from, to := fmt.Sprintf("(%d,0)", int64(part)*per), fmt.Sprintf("(%d,0)", int64(part+1)*per)
			rows, err := c.db.Query(ctx, `SELECT data FROM ceiling_chunks WHERE ctid >= $1::text::tid AND ctid < $2::text::tid`, from, to)
			if err != nil {
				errs <- err
				return
			}
			defer rows.Close()
			for rows.Next() {
				b := rows.RawValues()[0]
				mu.Lock() // w is io.Discard here: order does not matter for a ceiling
				n, err := w.Write(b)
				total += int64(n)
				mu.Unlock()
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- rows.Err()
		}()
	}
	var first error
	for range c.conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return total, first
}

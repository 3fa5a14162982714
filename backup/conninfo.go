package backup

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
)

// libpqKeywords are the connection parameters passed on to the client
// programs; anything else in a pgx connection string (pool_max_conns,
// statement_cache_capacity…) is pgx's own and would make libpq fail.
var libpqKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "channel_binding": true, "connect_timeout": true, "client_encoding": true,
	"options": true, "application_name": true, "fallback_application_name": true, "keepalives": true,
	"keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"tcp_user_timeout": true, "gssencmode": true, "sslmode": true, "sslcompression": true,
	"sslcert": true, "sslkey": true, "sslpassword": true, "sslcertmode": true, "sslrootcert": true,
	"sslcrl": true, "sslcrldir": true, "sslsni": true, "requirepeer": true,
	"ssl_min_protocol_version": true, "ssl_max_protocol_version": true, "krbsrvname": true,
	"gsslib": true, "gssdelegation": true, "service": true, "target_session_attrs": true,
	"load_balance_hosts": true,
}

// ParseConnString reads a PostgreSQL connection string in URL form
// (postgres://user:pass@host:port/db?sslmode=require) or keyword/value form
// (host=h dbname='my db') into its parameters.
func ParseConnString(s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return parseConnURL(s)
	}
	return parseConnKV(s)
}

func parseConnURL(s string) (map[string]string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("backup: connection URL: %w", err)
	}
	p := map[string]string{}
	if u.User != nil {
		if n := u.User.Username(); n != "" {
			p["user"] = n
		}
		if pw, ok := u.User.Password(); ok {
			p["password"] = pw
		}
	}
	if h := u.Hostname(); h != "" {
		p["host"] = h
	}
	if port := u.Port(); port != "" {
		p["port"] = port
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		p["dbname"] = db
	}
	for k, vs := range u.Query() {
		if len(vs) > 0 {
			p[k] = vs[len(vs)-1]
		}
	}
	return p, nil
}

func parseConnKV(s string) (map[string]string, error) {
	p := map[string]string{}
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return p, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("backup: connection string: missing '=' after %q", key)
		}
		i++
		skipSpace()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					closed = true
					i++
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("backup: connection string: unterminated quoted value of %q", key)
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		p[key] = val.String()
	}
}

// conninfo is how a client program is told where to connect: a
// keyword/value string without the password, which goes into a private
// passfile instead of the command line.
type conninfo struct {
	params map[string]string
}

func newConninfo(connString string) (conninfo, error) {
	p, err := ParseConnString(connString)
	if err != nil {
		return conninfo{}, err
	}
	for k := range p {
		if !libpqKeywords[k] {
			delete(p, k)
		}
	}
	return conninfo{params: p}, nil
}

// withDB returns a copy pointed at database db.
func (c conninfo) withDB(db string) conninfo {
	p := make(map[string]string, len(c.params)+1)
	for k, v := range c.params {
		p[k] = v
	}
	p["dbname"] = db
	return conninfo{params: p}
}

func (c conninfo) database() string { return c.params["dbname"] }

// String renders the parameters except the password.
func (c conninfo) String() string {
	keys := make([]string, 0, len(c.params))
	for k := range c.params {
		if k != "password" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(c.params[k])
		parts = append(parts, k+"='"+v+"'")
	}
	return strings.Join(parts, " ")
}

// env returns the environment for a client program, writing the password
// (if any) to a 0600 passfile removed by cleanup.
func (c conninfo) env() (env []string, cleanup func(), err error) {
	env = append(os.Environ(), "PGCONNECT_TIMEOUT=30")
	cleanup = func() {}
	pw, ok := c.params["password"]
	if !ok {
		return env, cleanup, nil
	}
	f, err := os.CreateTemp("", "justpg-pgpass-*")
	if err != nil {
		return nil, nil, fmt.Errorf("backup: creating passfile: %w", err)
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(pw)
	_, werr := f.WriteString("*:*:*:*:" + esc + "\n")
	cerr := f.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(f.Name())
		return nil, nil, fmt.Errorf("backup: writing passfile: %v %v", werr, cerr)
	}
	return append(env, "PGPASSFILE="+f.Name()), func() { _ = os.Remove(f.Name()) }, nil
}

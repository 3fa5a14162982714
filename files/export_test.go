package files

// ListQuery exposes the SQL of List to the tests' EXPLAIN checks.
func ListQuery(s *Store, o ListOptions) (string, []any, error) { return s.listQuery(o) }

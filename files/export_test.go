package files

// ListQuery exposes the SQL of List to the tests' EXPLAIN checks.
func ListQuery(s *Store, o ListOptions) (string, []any, error) { return s.listQuery(o) }

// DecodeCursor and EncodeCursor expose the List cursor codec to the fuzzer.
func DecodeCursor(c string) (string, string, error) { return decodeCursor(c) }

// EncodeCursor is encodeCursor.
func EncodeCursor(name, id string) string { return encodeCursor(name, id) }

// NormalizeContentType is normalizeContentType.
func NormalizeContentType(ct string) (string, string, error) { return normalizeContentType(ct) }

// PrefixUpperBound is prefixUpperBound.
func PrefixUpperBound(p string) (string, bool) { return prefixUpperBound(p) }

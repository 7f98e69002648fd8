package conf

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the module's directory, two up from lib/conf.
const repoRoot = "../.."

func TestTableSorted(t *testing.T) {
	for i := 1; i < len(table); i++ {
		if table[i-1].Name >= table[i].Name {
			t.Errorf("table: %q before %q: keep it sorted, one row per name", table[i-1].Name, table[i].Name)
		}
	}
	for _, s := range table {
		if s.Help == "" || s.Readers == "" {
			t.Errorf("%s: every row says who reads it and what it is for", s.Name)
		}
		if s.Kind == Number {
			if _, err := strconv.ParseInt(s.Default, 10, 64); err != nil {
				t.Errorf("%s: a Number's default must be a number, not %q", s.Name, s.Default)
			}
		}
	}
}

// TestManualListsEverySetting: im2000-conf(5) is every setting. An entry
// there is a .TP paragraph whose tag line names it (.B name, .BR a ", " b,
// .BI lists/ name).
func TestManualListsEverySetting(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "man", "im2000-conf.5"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if lines[i] != ".TP" {
			continue
		}
		tag := lines[i+1]
		for _, f := range regexp.MustCompile(`"[^"]*"|\S+`).FindAllString(tag, -1) {
			documented[strings.Trim(f, `"`)] = true
		}
	}
	for _, s := range table {
		if !documented[s.Name] && !documented[strings.TrimSuffix(s.Name, "/")] {
			t.Errorf("%s is in lib/conf's table but has no entry in man/im2000-conf.5", s.Name)
		}
	}
}

// settingReads finds the literal names the programs read as settings:
// calls of a conf.Dir's String(name, def), Int(name, def), Lines(name),
// Str(name), Num(name) and Path(name) with a string literal. The test
// cannot type-check without x/tools, so it goes by method name and
// argument count, which no other method in the tree shares.
func settingReads(t *testing.T) map[string][]string {
	t.Helper()
	reads := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "tests", "testdata", ".git", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "tlstest") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			want := map[string]int{"String": 2, "Int": 2, "Lines": 1, "Str": 1, "Num": 1, "Path": 1}[sel.Sel.Name]
			if want == 0 || len(call.Args) != want {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			name, err := strconv.Unquote(lit.Value)
			if err != nil || name == "" {
				return true
			}
			where := fset.Position(call.Pos()).String()
			reads[name] = append(reads[name], where)
			// A table's default is written once: Int(name, def) and
			// String(name, "") would write it again.
			if _, known := Lookup(name); known {
				if sel.Sel.Name == "Int" {
					t.Errorf("%s: read %q with Num, which takes the table's default", where, name)
				}
				if d, ok := call.Args[len(call.Args)-1].(*ast.BasicLit); ok && sel.Sel.Name == "String" && d.Value == `""` {
					t.Errorf("%s: read %q with Str, which takes the table's default", where, name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return reads
}

// TestEveryReadIsInTheTable: a program that reads a setting the table
// does not know is a setting nobody documented.
func TestEveryReadIsInTheTable(t *testing.T) {
	reads := settingReads(t)
	var names []string
	for n := range reads {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := Lookup(n); !ok {
			t.Errorf("%s reads setting %q, which is not in lib/conf/settings.go's table", reads[n][0], n)
		}
	}
}

func TestLookup(t *testing.T) {
	if s, ok := Lookup("lists/announce"); !ok || s.Name != "lists/" {
		t.Errorf("lists/announce: %v %v", s, ok)
	}
	if _, ok := Lookup("nosuchsetting"); ok {
		t.Error("nosuchsetting found")
	}
	d := Dir(t.TempDir())
	if n, err := d.Num("concurrency"); err != nil || n != 10 {
		t.Errorf("concurrency default: %d %v", n, err)
	}
	os.WriteFile(d.Path("concurrency"), []byte("3\n"), 0o644)
	if n, err := d.Num("concurrency"); err != nil || n != 3 {
		t.Errorf("concurrency: %d %v", n, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Num of a name not in the table did not panic")
		}
	}()
	d.Num("nosuchsetting")
}

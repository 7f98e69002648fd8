package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Check says so when the configuration directory itself is missing (or is
// not a directory). Every setting's file may be missing, which means its
// default, so without this check a mistyped or unset $IM2000_CONF shows up
// only later and elsewhere: as a default that is wrong, or as a message
// about one setting's file. Commands call it before they read settings.
func (d Dir) Check() error {
	fi, err := os.Stat(string(d))
	switch {
	case errors.Is(err, fs.ErrNotExist) && os.Getenv("IM2000_CONF") == "":
		return fmt.Errorf("the configuration directory %s does not exist: set IM2000_CONF to yours", d)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the configuration directory %s (IM2000_CONF) does not exist: check the name, or create it", d)
	case err != nil:
		return fmt.Errorf("the configuration directory: %v", err)
	case !fi.IsDir():
		return fmt.Errorf("the configuration directory %s is not a directory (IM2000_CONF names a directory of one file per setting)", d)
	}
	return nil
}

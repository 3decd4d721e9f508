package fsfiles

import "errors"

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func closeFd(fd int) { _ = unixClose(fd) }

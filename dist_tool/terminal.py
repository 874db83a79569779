"""The CLI's end of a task's terminal (``task exec -t``): the window size to create it with, and
copying between our terminal (raw meanwhile) and the pty master the shim passed us."""

from __future__ import annotations

import os


def window_size(stdio: tuple[int, int, int]) -> tuple[int, int] | None:
    """(rows, columns) of the first of ``stdio`` that is a terminal with a size, else None."""
    import fcntl
    import struct
    import termios

    for fd in stdio:
        try:
            rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        except OSError:
            continue
        if rows and cols:
            return rows, cols
    return None


def attach(master: int, stdio: tuple[int, int, int]) -> None:
    """Copies between our terminal and a process's pty ``master`` until the process has closed it,
    or our output's reader has left (``… | head -1``): then the terminal hangs up as the shim's
    does (``Shim._output_gone``). Our terminal is raw meanwhile, and its size follows the window
    (SIGWINCH)."""
    import fcntl
    import select
    import signal
    import termios
    import tty

    from dist_tool.shim.console import end_of_input, write_all

    def resize(*_: object) -> None:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(stdio[0], termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass

    saved = termios.tcgetattr(stdio[0]) if os.isatty(stdio[0]) else None
    old_winch = signal.signal(signal.SIGWINCH, resize)
    try:
        if saved is not None:
            tty.setraw(stdio[0])
        resize()
        # Input waits in ``pending`` until the terminal takes it, and the master is read
        # meanwhile: a blocking write of input the process is not reading, while its output (the
        # echo of that input) filled the terminal, hung both of us (``exec -t -- cat < big``).
        os.set_blocking(master, False)
        pending = b""
        reading = True
        last = b"\n"  # the last byte copied in: ^D ends a line first, then the input
        while True:
            readers = [master, stdio[0]] if reading and not pending else [master]
            try:
                ready, writable, _ = select.select(readers, [master] if pending else [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    return
                try:
                    if data:
                        write_all(stdio[1], data)
                except BrokenPipeError:
                    return  # closing the master below hangs the terminal up
            if writable:
                try:
                    pending = pending[os.write(master, pending):]
                except BlockingIOError:
                    pass
                except OSError:  # the terminal is gone: nobody reads the rest
                    pending = b""
            if stdio[0] in ready:
                data = os.read(stdio[0], 65536)
                if data:
                    pending, last = data, data[-1:]
                else:
                    reading = False
                    if saved is None:  # a pipe or file, not our terminal: its end is the input's end,
                        # the terminal's end of file, as the shim sends it for a run -t
                        pending = end_of_input(last)
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(stdio[0], termios.TCSADRAIN, saved)
        os.close(master)

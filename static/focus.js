// A run started with a button: the editor takes the keyboard at once, so Esc and Tab act on the run.
() => { document.querySelector('#document .sh-editor')?.cmView?.focus(); }

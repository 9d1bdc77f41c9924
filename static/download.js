// Download: once the page has written the file, the browser saves it (the file box stays hidden).
() => { document.querySelector('#download a[download]')?.click(); }

import{a4 as a,a5 as m}from"./svelte_runtime.js";export{a as mount,m as unmount};

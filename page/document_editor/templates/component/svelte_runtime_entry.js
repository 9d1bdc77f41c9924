import{a2 as a,a3 as m}from"./svelte_runtime.js";export{a as mount,m as unmount};

// Gradio mounts a custom component with the Svelte runtime it was built with: this entry exports it.
export { mount, unmount } from "svelte";

/** The dashboard's browser code, bundled: one script and one stylesheet (uPlot's rules included). */
export interface DashboardBundle {
  js: string;
  css: string;
}

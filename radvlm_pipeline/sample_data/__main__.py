from radvlm_pipeline.sample_data.cli import main

main()
